"""A go-plugin plugin in Python, for plugtap's tests.

Written the way go-plugin's guide for non-Go plugins describes: it serves
gRPC with PyPI's grpcio, reports health with grpcio-health-checking
("plugin" is SERVING), serves GRPCController/Shutdown and GRPCStdio, and
prints the handshake line on stdout. It also registers server reflection
(grpcio-reflection) and, when the host opens GRPCBroker/StartStream,
announces a second server (kv.Counter, broker service id 1) on a fresh
Unix socket.

Environment: BASIC_PLUGIN=hello is required (the magic cookie, checked as a
Go plugin checks it); KV_PLUGIN_NETWORK=tcp listens on 127.0.0.1 instead of
a Unix socket; KV_PLUGIN_DIE_ON_PUT=KEY makes the process exit (code 3)
in the middle of a Put of that key, before answering. Generated stubs come from scripts/setup-goplugin-peer.sh.
"""

import json
import os
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".venv-goplugin", "gen"))

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import kv_pb2
import kv_pb2_grpc
import plugin_pb2
import plugin_pb2_grpc
from google.protobuf import empty_pb2

STOP = threading.Event()


def log(level, message, **fields):
    entry = {"@level": level, "@message": message, "@module": "kv-plugin",
             "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}
    entry.update(fields)
    sys.stderr.write(json.dumps(entry) + "\n")
    sys.stderr.flush()


class KV(kv_pb2_grpc.KVServicer):
    def __init__(self):
        self.data = {}

    def Get(self, request, context):
        if request.key not in self.data:
            context.abort(grpc.StatusCode.NOT_FOUND, "no key %r" % request.key)
        return kv_pb2.GetResponse(value=self.data[request.key])

    def Put(self, request, context):
        if request.key == os.environ.get("KV_PLUGIN_DIE_ON_PUT"):
            log("error", "dying in the middle of a call", key=request.key)
            os._exit(3)
        self.data[request.key] = request.value
        log("debug", "put", key=request.key)
        return empty_pb2.Empty()

    def Watch(self, request, context):
        value = self.data.get(request.key, b"")
        for _ in range(3):
            yield kv_pb2.GetResponse(value=value)


class Counter(kv_pb2_grpc.CounterServicer):
    def __init__(self):
        self.count = 0

    def Next(self, request, context):
        self.count += 1
        return kv_pb2.CountReply(count=self.count)


class Controller(plugin_pb2_grpc.GRPCControllerServicer):
    def Shutdown(self, request, context):
        log("info", "shutdown requested")
        STOP.set()
        return plugin_pb2.Empty()


class Stdio(plugin_pb2_grpc.GRPCStdioServicer):
    def StreamStdio(self, request, context):
        yield plugin_pb2.StdioData(channel=plugin_pb2.StdioData.STDOUT, data=b"kv plugin stdout line\n")
        STOP.wait()


class Broker(plugin_pb2_grpc.GRPCBrokerServicer):
    def __init__(self, make_address):
        self.make_address = make_address
        self.servers = []

    def StartStream(self, request_iterator, context):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        kv_pb2_grpc.add_CounterServicer_to_server(Counter(), server)
        network, address, target = self.make_address("broker")
        server.add_insecure_port(target)
        server.start()
        self.servers.append(server)
        log("info", "announcing broker service", service_id=1, address=address)
        yield plugin_pb2.ConnInfo(service_id=1, network=network, address=address)
        for info in request_iterator:
            log("info", "broker message from the host", service_id=info.service_id, address=info.address)
        STOP.wait()


def main():
    if os.environ.get("BASIC_PLUGIN") != "hello":
        sys.stderr.write("This binary is a plugin. These are not meant to be executed directly.\n"
                         "Please execute the program that consumes these plugins, which will\n"
                         "load any plugins automatically\n")
        sys.exit(1)
    tcp = os.environ.get("KV_PLUGIN_NETWORK") == "tcp"
    sockdir = tempfile.mkdtemp(prefix="kvp", dir=os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or "/tmp")

    def make_address(name):
        if tcp:
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            return "tcp", "127.0.0.1:%d" % port, "127.0.0.1:%d" % port
        path = os.path.join(sockdir, name + ".sock")
        return "unix", path, "unix:" + path

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    kv_pb2_grpc.add_KVServicer_to_server(KV(), server)
    plugin_pb2_grpc.add_GRPCControllerServicer_to_server(Controller(), server)
    plugin_pb2_grpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    plugin_pb2_grpc.add_GRPCBrokerServicer_to_server(Broker(make_address), server)
    checker = health.HealthServicer()
    checker.set("plugin", health_pb2.HealthCheckResponse.ServingStatus.Value("SERVING"))
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection([
        kv_pb2.DESCRIPTOR.services_by_name["KV"].full_name,
        kv_pb2.DESCRIPTOR.services_by_name["Counter"].full_name,
        reflection.SERVICE_NAME,
    ], server)
    network, address, target = make_address("plugin")
    server.add_insecure_port(target)
    server.start()
    log("info", "kv plugin starting", pid=os.getpid())
    print("1|1|%s|%s|grpc" % (network, address))
    sys.stdout.flush()
    STOP.wait()
    time.sleep(0.1)
    server.stop(0)


if __name__ == "__main__":
    main()
