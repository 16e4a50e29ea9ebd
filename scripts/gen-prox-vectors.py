#!/usr/bin/env python3
"""Writes prox plugin-protocol byte vectors made by PyPI `msgpack`, not by plugtap.

Each vector is a hook payload or reply as a Python value (fields in prox's
declaration order, the short keys), packed with msgpack.packb; requests are
also wrapped in the envelope {"t": hook byte, "d": bin} and framed with a
4-byte big-endian length. plugtap's tests (tests/it/prox_vectors.rs) decode
these bytes, compare the values, and encode the values back.

Python's packer writes every integer in its smallest form, so `t` is a
positive fixint here, where prox's Go encoder writes `cc NN`, and the int64
fields (cl, rx, tx, ms) are compact, where Go writes `d3` + 8 bytes.

    .venv-prox/bin/python scripts/gen-prox-vectors.py > tests/vectors/prox.json

With --decode, reads a JSON list of hex strings on stdin and prints the
values msgpack decodes them to (same JSON mapping), one list: the tests use
it to check plugtap's Go-style bytes with this independent decoder.
"""

import base64
import json
import struct
import sys

import msgpack

HOOKS = {"on_request": 1, "on_response": 2, "on_connect": 3, "on_disconnect": 4}


def to_json(v):
    """plugtap's lossless mapping, for the values these vectors use."""
    if isinstance(v, bytes):
        return {"$bin": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v) and not (len(v) == 1 and next(iter(v)).startswith("$")):
            return {k: to_json(x) for k, x in v.items()}
        return {"$map": [[to_json(k), to_json(x)] for k, x in v.items()]}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    return v


REQUEST_MIN = {"r": "", "m": "GET", "p": "/", "d": "", "a": "127.0.0.1:40000", "h": {}}

VECTORS = [
    ("on_request_full", "on_request", "request", {
        "r": "web:0", "m": "POST", "p": "/api/items", "q": "page=2&clean=1", "d": "api.example",
        "ho": "api.example:8443", "pr": "HTTP/1.1", "a": "198.51.100.7:51234", "cl": 11,
        "h": {"Content-Type": "application/json", "X-User": "alice"}, "bd": b'{"id":"42"}',
        "md": "api", "mg": "items", "mp": "/api/*", "v": {"tenant": "acme"}, "tg": "10.0.0.5:8080"}),
    ("on_request_min", "on_request", "request", REQUEST_MIN),
    ("on_request_bin16_body", "on_request", "request", {
        "r": "web:1", "m": "PUT", "p": "/upload", "d": "up.example", "a": "192.0.2.4:1234",
        "cl": 300, "h": {"Content-Length": "300"}, "bd": bytes(range(256)) + b"x" * 44}),
    ("authorize_deny", "on_request", "result",
     {"ok": False, "s": 403, "b": "forbidden", "h": {"X-Denied-By": "prox-peer"}}),
    ("authorize_allow", "on_request", "result", {
        "ok": True, "h": {"X-Plugin": "prox-peer"}, "sp": {"dl": 10.0, "ul": 2.5, "gk": "alice"},
        "cq": True, "rp": "/v2/items"}),
    ("authorize_drop", "on_request", "result", {"ok": False, "dr": True}),
    ("on_response", "on_response", "request",
     {"req": REQUEST_MIN, "resp": {"s": 502, "h": {"Server": "nginx"}}}),
    ("response_mod", "on_response", "result",
     {"s": 503, "h": {"X-Served-By": "prox-peer"}, "rm": ["Server", "X-Powered-By"]}),
    ("on_connect_reference", "on_connect", "request",
     {"r": "l4:0", "d": "a.example", "a": "1.2.3.4:5555"}),
    ("conn_result", "on_connect", "result", {"ok": True}),
    ("on_disconnect", "on_disconnect", "request", {
        "r": "web:0", "tg": "10.0.0.5:8080", "a": "198.51.100.7:51234",
        "rx": 1048576, "tx": 5000000000, "ms": 1532}),
]


def generate():
    out = []
    for name, hook, part, value in VECTORS:
        inner = msgpack.packb(value, use_bin_type=True)
        v = {"name": name, "hook": hook, "part": part, "value": to_json(value), "hex": inner.hex()}
        if part == "request":
            envelope = msgpack.packb({"t": HOOKS[hook], "d": inner}, use_bin_type=True)
            v["envelope_hex"] = envelope.hex()
            v["frame_hex"] = (struct.pack(">I", len(envelope)) + envelope).hex()
        out.append(v)
    return {
        "generator": "scripts/gen-prox-vectors.py",
        "msgpack": msgpack.version and ".".join(str(x) for x in msgpack.version),
        "vectors": out,
    }


def decode():
    hexes = json.load(sys.stdin)
    values = [to_json(msgpack.unpackb(bytes.fromhex(h), raw=False)) for h in hexes]
    json.dump(values, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1:] == ["--decode"]:
        decode()
    else:
        json.dump(generate(), sys.stdout, indent=1)
        sys.stdout.write("\n")
