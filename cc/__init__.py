"""cc: a command-and-control message router for fleets of database servers.

One ``cc-server`` process binds one ROUTER socket, routes each CC message by the
dotted prefix of its type to the handlers configured in ``[routes]``, and relays
replies back along the ZeroMQ route-id stack.
"""

__version__ = "0.9.0"
