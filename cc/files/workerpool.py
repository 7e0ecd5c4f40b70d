"""Worker threads for handlers whose work blocks (file writes), fed from the IOLoop.

A handler on the loop calls :meth:`WorkerPool.submit` with a key; jobs with
the same key always go to the same thread, in order, so two versions of one
destination file never race.  Each thread has a bounded queue: a full queue
refuses the job (the caller counts the drop) instead of blocking the loop.
A job's result or exception is handed back on the loop thread, where stats
and rate-limited logs are safe to touch.
"""

import asyncio
import queue
import threading
import zlib
from typing import Any, Callable, List, Optional

from tornado.ioloop import IOLoop

__all__ = ["WorkerPool"]

Done = Callable[[Any, Optional[BaseException]], None]

_STOP = object()


class WorkerPool:
    """``nthreads`` threads named ``<name>-<i>``, each with a queue of ``qsize`` jobs."""

    def __init__(self, name: str, nthreads: int, qsize: int, io_loop: IOLoop) -> None:
        if nthreads < 1 or qsize < 1:
            raise ValueError("%s: need at least one worker thread and a queue size of 1" % name)
        self.io_loop = io_loop
        self.queues: List["queue.Queue[Any]"] = [queue.Queue(qsize) for _ in range(nthreads)]
        self.threads = [
            threading.Thread(target=self._run, args=(q,), name="%s-%d" % (name, i), daemon=True)
            for i, q in enumerate(self.queues)
        ]
        self._stopped = False
        for thread in self.threads:
            thread.start()

    def submit(self, key: str, done: Done, func: Callable[..., Any], *args: Any) -> bool:
        """Queue ``func(*args)`` on the thread owning ``key``; False if that queue is full.

        ``done(result, error)`` is called on the loop thread afterwards.
        """
        if self._stopped:
            return False
        q = self.queues[zlib.crc32(key.encode("utf8", "surrogateescape")) % len(self.queues)]
        try:
            q.put_nowait((done, func, args))
        except queue.Full:
            return False
        return True

    def broadcast(self, done: Done, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` once on every thread (after what is queued there)."""
        for q in self.queues:
            self._put_later(q, (done, func, args))

    def _put_later(self, q: "queue.Queue[Any]", item: Any) -> None:
        # a full queue must not block the loop: a helper thread waits for room
        try:
            q.put_nowait(item)
        except queue.Full:
            threading.Thread(target=q.put, args=(item,), daemon=True).start()

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then end the threads (waits at most ``timeout`` seconds)."""
        if self._stopped:
            return
        self._stopped = True
        for q in self.queues:
            self._put_later(q, _STOP)
        loop = asyncio.get_running_loop()
        for thread in self.threads:
            await asyncio.wait_for(loop.run_in_executor(None, thread.join), timeout)

    def _run(self, q: "queue.Queue[Any]") -> None:
        while True:
            item = q.get()
            if item is _STOP:
                return
            done, func, args = item
            result: Any = None
            error: Optional[BaseException] = None
            try:
                result = func(*args)
            except Exception as ex:
                error = ex
            self.io_loop.add_callback(done, result, error)
