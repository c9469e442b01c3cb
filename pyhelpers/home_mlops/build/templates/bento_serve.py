"""``bentoml serve`` with SO_REUSEPORT on its listening socket (the bento image's CMD).

In serving mode ``bento`` the BentoML server is the app's front door, and a new
run's server must bind the public port while the old one still serves it (the
zero-downtime switch every front door gets: both listen for a moment, then the
old one stops accepting and drains). BentoML's arbiter makes that socket with
circus, which leaves SO_REUSEPORT off; this sets it before the arbiter binds,
and changes nothing else (one socket, bound once, passed to the workers as before).
"""
import socket
import sys

from circus.sockets import CircusSocket

_circus_init = CircusSocket.__init__


def _init_with_reuseport(self, *args, **kwargs):
    _circus_init(self, *args, **kwargs)
    if not self.is_unix:
        self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


CircusSocket.__init__ = _init_with_reuseport

if __name__ == "__main__":
    from bentoml_cli.cli import cli

    sys.exit(cli(["serve", *sys.argv[1:]]))
