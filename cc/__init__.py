"""cc: a command-and-control message router for fleets of database servers.

One ``cc-server`` process binds one ROUTER socket, routes each CC message by the
dotted prefix of its type to the handlers configured in ``[routes]``, and relays
replies back along the ZeroMQ route-id stack.

Start with doc/architecture.md: the path a message takes through a server
(:mod:`cc.dispatch`), who owns what, and the five files to read first.
"""

__version__ = "0.9.0"
