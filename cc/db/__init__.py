"""PostgreSQL for dbhandler: :mod:`~cc.db.call` checks and shapes a call, and
:mod:`~cc.db.session` runs it on an async connection on the loop.
"""
