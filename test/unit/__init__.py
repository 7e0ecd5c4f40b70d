"""The fast tier: in-process tests, no subprocess and no server started (``make test-unit``).

Each module tests one class through its own API, with real sockets only on ``inproc://``.
"""
