"""Files sent over cc: infofiles, logs and tailed logs, from the reading side to the writers.

:mod:`~cc.files.paths` keeps destination names from the network inside
``dstdir``, :mod:`~cc.files.compression` is the one list of compressions,
:mod:`~cc.files.infomsg` builds ``pub.infofile`` messages,
:mod:`~cc.files.tailsource` and :mod:`~cc.files.tailfiles` are the two ends
of logtail, and :mod:`~cc.files.workerpool` runs the writers' blocking I/O.
"""
