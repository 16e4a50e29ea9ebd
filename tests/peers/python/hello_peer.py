"""Test plugin for the real Python pluginserver (PyPI kong-pdk).

Access phase: reads the `host` request header and sets the response header
`x-hello: <greeting> <host>`. plugtap's tests drive it through
`kong-python-pluginserver -d tests/peers/python`.
"""

Schema = ({"greeting": {"type": "string", "default": "hello"}},)
version = "0.1.0"
priority = 100


class Plugin(object):
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        host, err = kong.request.get_header("host")
        if err:
            kong.log.err("no host header: " + str(err))
            return
        greeting = self.config.get("greeting") or "hello"
        kong.response.set_header("x-hello", "%s %s" % (greeting, host))
