"""cc-bench: cc-server measured against its baselines, each in its own processes.

* :mod:`~cctools.bench.cli`: the command, which runs the scenario named,
* :mod:`~cctools.bench.scenarios`: the scenarios, one module each,
* :mod:`~cctools.bench.roles`: the sender, sink, echo and baseline forwarder
  processes of the forwarding scenarios (``python -m cctools.bench.roles``),
* :mod:`~cctools.bench.cload`: ``benchload.c``, the C sender, sink and fleet,
  compiled on first use.
"""
