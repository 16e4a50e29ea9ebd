#!/usr/bin/env python3
"""Writes ProtoBuf:1 test vectors made by the official Python protobuf runtime.

proto/pluginsocket.proto is compiled with grpcio-tools' bundled protoc, the
messages below are built with the generated Python classes, and each vector
records the wire bytes (SerializeToString, deterministic) and the canonical
JSON (json_format.MessageToDict). plugtap's tests decode the bytes, compare
the JSON, and encode the JSON back to the same bytes (tests/it/pb_vectors.rs).

Run scripts/setup-python-protobuf.sh first, then:

    .venv-proto/bin/python scripts/gen-protobuf-vectors.py > tests/vectors/protobuf.json
"""

import importlib
import json
import os
import sys
import tempfile

from grpc_tools import protoc
from google.protobuf import json_format, struct_pb2, empty_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_schema():
    out = tempfile.mkdtemp(prefix="pt-proto-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main([
        "protoc",
        "-I" + os.path.join(ROOT, "proto"),
        "-I" + include,
        "--python_out=" + out,
        os.path.join(ROOT, "proto", "pluginsocket.proto"),
    ])
    if code != 0:
        sys.exit("protoc failed on proto/pluginsocket.proto")
    sys.path.insert(0, out)
    return importlib.import_module("pluginsocket_pb2")


def has_big_map(msg):
    """True when a map (or Struct) inside msg has more than one entry: the
    order of map entries on the wire is then up to the encoder."""
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if len(value) > 1:
                return True
            entries = value.values()
        elif field.is_repeated:
            entries = value
        else:
            entries = [value]
        for item in entries:
            if hasattr(item, "ListFields") and has_big_map(item):
                return True
    return False


def vector(name, msg, **extra):
    v = {
        "name": name,
        "type": msg.DESCRIPTOR.full_name,
        "hex": msg.SerializeToString(deterministic=True).hex(),
        "json": json_format.MessageToDict(msg),
    }
    if has_big_map(msg):
        v["unordered_maps"] = True
    v.update(extra)
    return v


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def value(x):
    v = struct_pb2.Value()
    if x is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, (int, float)):
        v.number_value = x
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, dict):
        v.struct_value.update(x)
    else:
        v.list_value.extend(x)
    return v


def main():
    pb = compile_schema()
    config = json.dumps({"message": "Kong!", "__seq__": 7, "__key__": "plugins:my-plugin:::::0dc6"})
    out = []

    def call(name, **cmd):
        out.append(vector(name, pb.RpcCall(**cmd)))

    def ret(name, **r):
        out.append(vector(name, pb.RpcReturn(**r)))

    call("start_instance", sequence=2,
         cmd_start_instance=pb.CmdStartInstance(name="my-plugin", config=config.encode()))
    ret("instance_status", sequence=2,
        instance_status=pb.InstanceStatus(name="my-plugin", instance_id=7, started_at=1718000000))
    ret("instance_status_with_config", sequence=9,
        instance_status=pb.InstanceStatus(name="p", instance_id=-3,
                                          config=value({"message": "Kong!", "n": 1.5, "list": [1, "x", None]}),
                                          started_at=-1))
    call("handle_event", sequence=3, cmd_handle_event=pb.CmdHandleEvent(instance_id=7, event_name="access"))
    ret("event_return", sequence=3)
    call("close_instance", sequence=4, cmd_close_instance=pb.CmdCloseInstance(instance_id=1298498081))
    call("get_plugin_names", sequence=5, cmd_get_plugin_names=pb.CmdGetPluginNames())
    call("get_plugin_info", sequence=1, cmd_get_plugin_info=pb.CmdGetPluginInfo(name="go-peer"))
    call("get_instance_status", sequence=9223372036854775807,
         cmd_get_instance_status=pb.CmdGetInstanceStatus(instance_id=2147483647))
    ret("plugin_info", sequence=1, plugin_info=pb.PluginInfo(
        name="go-peer", updated_at=1718000000, loaded_at=1718000001, phases=["access", "log"],
        version="0.0.1", priority=7, schema='{"name":"go-peer"}'))
    ret("plugin_names", sequence=6, plugin_names=pb.PluginNames(names=["a", "b"]))

    def pdk(method, part, name, msg):
        out.append(vector(name, msg, method=method, part=part))

    pdk("kong.request.get_header", "args", "get_header_args", pb.String(v="host"))
    pdk("kong.request.get_header", "reply", "get_header_reply", pb.String(v="localhost:8000"))
    pdk("kong.request.get_header", "reply", "get_header_missing", pb.String(v=""))
    pdk("kong.response.set_header", "args", "set_header_args",
        pb.KV(k="x-hello", v=value("hello localhost:8000")))
    pdk("kong.response.set_header", "reply", "set_header_reply", empty_pb2.Empty())
    pdk("kong.ctx.shared.set", "args", "ctx_shared_set_args",
        pb.KV(k="seen", v=value({"count": 3, "tags": ["a", True, None], "nested": {"ok": False}})))
    pdk("kong.ctx.shared.get", "reply", "ctx_shared_get_null", value(None))
    pdk("kong.ctx.shared.get", "reply", "ctx_shared_get_list", value([1.5, "two", False]))
    pdk("kong.log.err", "args", "log_err_args", value(["boom", 42, {"k": "v"}]).list_value)
    pdk("kong.request.get_headers", "args", "get_headers_args", pb.Int(v=100))
    pdk("kong.request.get_headers", "reply", "get_headers_reply",
        struct({"host": "example.test", "accept": ["text/html", "*/*"], "x-empty": []}))
    pdk("kong.response.exit", "args", "exit_args",
        pb.ExitArgs(status=403, body=b"denied\x00\xff", headers=struct({"content-type": "text/plain"})))
    pdk("kong.request.get_raw_body", "reply", "raw_body_content", pb.RawBodyResult(content=b"\x00\x01binary\xfe"))
    pdk("kong.request.get_raw_body", "reply", "raw_body_file",
        pb.RawBodyResult(body_filepath="/tmp/nginx/body/0001"))
    pdk("kong.request.get_uri_captures", "reply", "uri_captures",
        pb.UriCapturesResult(unnamed=[b"users", b"42"], named={"id": b"42"}))
    pdk("kong.nginx.req_start_time", "reply", "req_start_time", pb.Number(v=1718000000.25))
    pdk("kong.client.get_port", "reply", "client_port", pb.Int(v=8000))
    pdk("kong.response.set_status", "args", "set_status_negative", pb.Int(v=-1))
    pdk("kong.ip.is_trusted", "reply", "is_trusted", pb.Bool(v=True))
    pdk("kong.client.get_protocol", "args", "get_protocol_args", pb.Bool(v=True))
    pdk("kong.client.load_consumer", "args", "load_consumer_args", pb.ConsumerSpec(id="alice", by_username=True))
    pdk("kong.client.load_consumer", "reply", "load_consumer_reply", pb.Consumer(
        id="8f1c", created_at=1718000000, username="alice", custom_id="c-1", tags=["vip"]))
    pdk("kong.client.authenticate", "args", "authenticate_args", pb.AuthenticateArgs(
        consumer=pb.Consumer(id="8f1c", username="alice"),
        credential=pb.AuthenticatedCredential(id="cred-1", consumer_id="8f1c")))
    pdk("kong.router.get_route", "reply", "route", pb.Route(
        id="r1", created_at=1, updated_at=2, name="web", protocols=["http", "https"], methods=["GET"],
        hosts=["example.test"], paths=["/"], https_redirect_status_code=426, regex_priority=-5,
        strip_path=True, preserve_host=False, tags=["t"], service=pb.ServiceKey(id="s1")))
    pdk("kong.router.get_service", "reply", "service", pb.Service(
        id="s1", name="svc", retries=5, protocol="http", host="upstream.test", port=80, path="/api",
        connect_timeout=60000, write_timeout=60000, read_timeout=60000,
        client_certificate=pb.CertificateKey(id="c1")))
    pdk("kong.node.get_memory_stats", "reply", "memory_stats", pb.MemoryStats(
        lua_shared_dicts=pb.MemoryStats.LuaSharedDicts(
            kong=pb.MemoryStats.LuaSharedDicts.DictStats(allocated_slabs=12288, capacity=5242880),
            kong_db_cache=pb.MemoryStats.LuaSharedDicts.DictStats(allocated_slabs=1, capacity=134217728)),
        workers_lua_vms=[pb.MemoryStats.WorkerLuaVm(http_allocated_gc=1024, pid=4242),
                         pb.MemoryStats.WorkerLuaVm(http_allocated_gc=2048, pid=4243)]))
    pdk("kong.service.set_target", "args", "set_target_args", pb.Target(host="10.0.0.7", port=8443))
    pdk("kong.service.set_upstream", "reply", "set_upstream_reply", pb.Bool(v=True))
    pdk("kong.service.request.set_raw_body", "args", "set_raw_body_args", pb.ByteString(v="héllo\n".encode()))
    pdk("kong.service.response.get_raw_body", "reply", "service_raw_body", pb.ByteString(v=bytes(range(256))))
    pdk("kong.nginx.set_ctx", "args", "set_ctx_args", pb.KV(k="n", v=value(-0.5)))
    pdk("kong.log.serialize", "reply", "serialize_reply", pb.String(v='{"request":{"uri":"/ü"}}'))

    json.dump({"generator": "scripts/gen-protobuf-vectors.py",
               "protobuf": importlib.import_module("google.protobuf").__version__,
               "vectors": out}, sys.stdout, indent=1, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
