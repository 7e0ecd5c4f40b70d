"""PostgreSQL for dbhandler: :mod:`~cc.db.call` checks and shapes a call,
:mod:`~cc.db.session` runs it on an async connection on the loop, and
:mod:`~cc.db.pgcluster` starts a throwaway cluster for the tests and the demo.
"""
