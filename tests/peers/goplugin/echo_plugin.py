"""A stand-in for a go-plugin plugin with AutoMTLS on, for plugtap's tests.

It prints a handshake whose sixth field looks like a certificate (more than
50 characters, so a host would use it) and echoes every byte it receives
on its Unix socket. plugtap cannot decode such traffic and must relay it
unchanged. ECHO_PLUGIN_TAIL replaces the fields after the address (e.g.
`grpc||true` for a multiplexing plugin, `netrpc` for net/rpc). Python
standard library only.
"""

import os
import socket
import sys
import tempfile
import threading

CERT = "MIIBcertificatebytesnotreallyDERbutlongerthanfiftycharactersAAAA"


def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def main():
    d = tempfile.mkdtemp(prefix="echo", dir=os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or "/tmp")
    path = os.path.join(d, "plugin.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    tail = os.environ.get("ECHO_PLUGIN_TAIL", "grpc|" + CERT)
    print("1|1|unix|%s|%s" % (path, tail))
    sys.stdout.flush()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
