"""Child processes: jobmgr's supervised daemons and taskexec's tasks.

:mod:`~cc.jobs.states` is the policy (states, back-off, hang detection),
:mod:`~cc.jobs.supervisor` runs one child by it, :mod:`~cc.jobs.pipes` reads
a child's output, and :mod:`~cc.jobs.env` and :mod:`~cc.jobs.link` are the
two ends of what jobmgr and a daemon it runs tell each other.
"""
