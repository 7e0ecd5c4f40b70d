"""Tools around cc that the product itself does not run.

:mod:`cctools.bench` is ``cc-bench`` (cc-server measured against its baselines),
:mod:`cctools.demo` is ``cc-demo`` (``make run``: the demo topology of ``conf/demo``),
:mod:`cctools.pgcluster` the throwaway PostgreSQL cluster of the demo, the
benchmarks and the tests.  They use the :mod:`cc` package as any client would;
nothing in :mod:`cc` imports them.
"""
