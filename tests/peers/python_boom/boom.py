"""Test plugin for the real Python pluginserver: its access phase raises an
exception before any PDK call when the config says `"boom": true`, after
one PDK call when it says `"boom": "late"`, and otherwise sets `x-ok: 1`.
plugtap's tests use it to show what kong-pdk's threaded server does after
such exceptions.
"""

version = "1.0.0"
priority = 1
Schema = ({"boom": {"type": "boolean", "default": False}},)


class Plugin(object):
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        boom = self.config.get("boom")
        if boom == "late":
            kong.request.get_header("host")
            raise RuntimeError("late boom")
        if boom:
            raise RuntimeError("boom")
        kong.response.set_header("x-ok", "1")
