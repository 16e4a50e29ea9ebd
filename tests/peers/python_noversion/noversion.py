"""Test plugin for the real Python pluginserver that declares no `version`
and no `priority`, to show what kong-pdk puts in Kong's query output then.
"""

Schema = ()


class Plugin(object):
    def __init__(self, config):
        self.config = config

    def access(self, kong):
        pass
