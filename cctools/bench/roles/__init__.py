"""The processes a forwarding run starts besides cc-server, one module per kind.

    python -m cctools.bench.roles ROLE [--url URL] [--upstream URL] [--messages N] ...

* :mod:`~cctools.bench.roles.load`: the Python sender and sink (``--load python``;
  the C ones are ``benchload.c``),
* :mod:`~cctools.bench.roles.echo`: the round-trip client, and the far end of the
  ``zmq.proxy`` echo baseline,
* :mod:`~cctools.bench.roles.forwarders`: the forwarders cc-server is measured
  against, libzmq's ``zmq.proxy`` and a stock pyzmq ``ZMQStream``.

A role that listens prints its port as the first line of its stdout.
"""
