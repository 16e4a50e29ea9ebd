#!/usr/bin/env python3
"""A prox-style plugin for plugtap's tests, written from prox's documented
plugin protocol with the PyPI `msgpack` package (not with plugtap).

stdin/stdout: JSON lines. Each `configure` is answered with
{"result":"ok"} and `ready` (socket and hooks); after the first one the
plugin pushes `set_targets` for the route. Socket: 4-byte big-endian
length + msgpack; requests are envelopes {"t": hook byte, "d": bin}, replies
bare maps; on_disconnect (t=4) gets no reply, unknown hook types get none
either. The plugin exits when stdin closes.

Behaviour, for the tests:
  on_request   path /admin...  -> deny 403 "forbidden" with X-Denied-By
               path /drop      -> deny and drop the connection
               path /crash     -> the process exits with code 3 mid-call
               path /bad-reply -> {"ok": "yes"} (a reply prox cannot decode)
               path /slow      -> answers after 300 ms
               otherwise       -> allow, with X-Plugin and X-Route headers,
                                  clean_query when the query has clean=1,
                                  a speed limit keyed by an X-User header
  on_response  -> sets X-Served-By, removes Server; upstream 500 becomes 503
  on_connect   -> denies SNI blocked.example
  on_disconnect-> pushes a `log` line with the byte counts

Options: --socket PATH (default /tmp/prox-p-<pid>.sock, as the SDK),
--announce PATH (the socket named in `ready`, default the real one),
--hooks a,b (announced hooks), --ignore-eof (keeps running after stdin
closes), --reply-to-disconnect (a bug: answers on_disconnect),
--long-line (pushes a log line over prox's 64 KiB limit after `ready`).
"""

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

import msgpack

MAX_FRAME = 1 << 20
HOOK_NAMES = {1: "on_request", 2: "on_response", 3: "on_connect", 4: "on_disconnect"}

out_lock = threading.Lock()


def send_line(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def log(text):
    sys.stderr.write("[prox-peer %d] %s\n" % (os.getpid(), text))
    sys.stderr.flush()


def on_request(req):
    path = req.get("p", "")
    if path == "/crash":
        log("crashing on purpose")
        os._exit(3)
    if path.startswith("/admin"):
        return {"ok": False, "s": 403, "b": "forbidden", "h": {"X-Denied-By": "prox-peer"}}
    if path == "/drop":
        return {"ok": False, "dr": True}
    if path == "/bad-reply":
        return {"ok": "yes"}
    if path == "/slow":
        time.sleep(0.3)
    result = {"ok": True, "h": {"X-Plugin": "prox-peer", "X-Route": req.get("r", "")}}
    user = (req.get("h") or {}).get("X-User")
    if user:
        result["sp"] = {"dl": 10.0, "ul": 2.5, "gk": user}
    if "clean=1" in req.get("q", ""):
        result["cq"] = True
    return result


def on_response(pair):
    resp = pair.get("resp") or {}
    mod = {"h": {"X-Served-By": "prox-peer"}, "rm": ["Server"]}
    if resp.get("s") == 500:
        mod["s"] = 503
    return mod


def on_connect(conn):
    return {"ok": conn.get("d") != "blocked.example"}


def on_disconnect(info):
    send_line({"method": "log", "params": {
        "level": "info", "message": "disconnect",
        "args": ["route", info.get("r", ""), "rx", info.get("rx", 0), "tx", info.get("tx", 0)]}})


HANDLERS = {1: on_request, 2: on_response, 3: on_connect}
ERROR_REPLIES = {1: {"ok": False, "s": 500, "b": "plugin error"}, 2: {}, 3: {"ok": False}}


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def write_frame(conn, payload):
    conn.sendall(struct.pack(">I", len(payload)) + payload)


def serve(conn, opts):
    with conn:
        while True:
            head = read_exact(conn, 4)
            if head is None:
                return
            (n,) = struct.unpack(">I", head)
            if n > MAX_FRAME:
                log("frame too large: %d bytes" % n)
                return
            body = read_exact(conn, n)
            if body is None:
                return
            try:
                env = msgpack.unpackb(body, raw=False)
                if not isinstance(env, dict):
                    raise ValueError("not a map")
            except Exception as e:  # the SDK closes the connection
                log("unmarshal envelope: %s" % e)
                return
            t = env.get("t", 0)
            data = env.get("d") or b""
            if t == 4:
                try:
                    on_disconnect(msgpack.unpackb(data, raw=False))
                except Exception as e:
                    log("unmarshal disconnect: %s" % e)
                if opts.reply_to_disconnect:
                    write_frame(conn, msgpack.packb({"ok": True}))
                continue
            if t not in HANDLERS:
                log("unknown hook type: %s" % t)
                continue
            try:
                payload = msgpack.unpackb(data, raw=False)
                if not isinstance(payload, dict):
                    raise ValueError("not a map")
            except Exception as e:
                log("unmarshal %s: %s" % (HOOK_NAMES[t], e))
                reply = ERROR_REPLIES[t]
            else:
                reply = HANDLERS[t](payload)
            write_frame(conn, msgpack.packb(reply, use_bin_type=True))


def accept_loop(listener, opts):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, opts), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", default="/tmp/prox-p-%d.sock" % os.getpid())
    p.add_argument("--announce")
    p.add_argument("--hooks", default="on_request,on_response,on_connect,on_disconnect")
    p.add_argument("--ignore-eof", action="store_true")
    p.add_argument("--reply-to-disconnect", action="store_true")
    p.add_argument("--long-line", action="store_true")
    opts = p.parse_args()

    if os.path.exists(opts.socket):
        os.remove(opts.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(opts.socket)
    listener.listen(16)
    threading.Thread(target=accept_loop, args=(listener, opts), daemon=True).start()
    hooks = [h for h in opts.hooks.split(",") if h]

    configured = False
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            log("invalid message: %s" % e)
            continue
        if msg.get("method") != "configure":
            log("unknown method: %s" % msg.get("method"))
            continue
        params = msg.get("params") or {}
        send_line({"result": "ok"})
        send_line({"method": "ready", "params": {"socket": opts.announce or opts.socket, "hooks": hooks}})
        if not configured:
            configured = True
            route = params.get("route_id") or "*"
            send_line({"method": "set_targets", "params": {
                "route_id": route, "targets": ["127.0.0.1:9001", "127.0.0.1:9002"]}})
            if opts.long_line:
                send_line({"method": "log", "params": {"level": "info", "message": "x" * 70000}})
    log("stdin closed")
    if opts.ignore_eof:
        while True:
            time.sleep(1)
    os.remove(opts.socket)
    sys.exit(0)


if __name__ == "__main__":
    main()
