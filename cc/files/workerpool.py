"""Worker threads for handlers whose work blocks (file writes), fed from the IOLoop.

A handler on the loop calls :meth:`WorkerPool.submit` with a key; jobs with
the same key always go to the same thread, in order, so two versions of one
destination file never race.  Each thread has a bounded queue: a full queue
refuses the job (the caller counts the drop) instead of blocking the loop.
A job's result or exception is handed back on the loop thread, where stats
and rate-limited logs are safe to touch: a thread runs what its queue holds
(up to :data:`BATCH` jobs) and hands the results back in one call, so a busy
writer wakes the loop once per batch, not once per job; ``after_batch``
(e.g. a flush) runs on the thread at the end of each batch.

Waking a thread, and the loop again for its results, costs about what
writing a few dozen records does (futexes, a context switch, the GIL
changing hands: ``cc-bench fleet``).  So handlers gather work on the loop
and hand it over once per :data:`HAND_OVER_DELAY` (:class:`HandOver`),
not once per drained batch.
"""

import asyncio
import queue
import threading
import zlib
from typing import Any, Callable, List, Optional

from tornado.ioloop import IOLoop

__all__ = ["WorkerPool", "HandOver", "HAND_OVER_DELAY"]

Done = Callable[[Any, Optional[BaseException]], None]

#: jobs a thread runs before handing their results back to the loop
BATCH = 256

_STOP = object()

#: seconds work gathers on the loop before it goes to the threads (its latency)
HAND_OVER_DELAY = 0.01


class HandOver:
    """Calls ``hand_over()`` :data:`HAND_OVER_DELAY` after work began to gather (:meth:`due`),
    or at once (:meth:`now`: work beyond a bound, a stop, a reload)."""

    def __init__(self, hand_over: Callable[[], None], delay: float = HAND_OVER_DELAY) -> None:
        self._hand_over = hand_over
        self.delay = delay
        self._timer: Optional[asyncio.TimerHandle] = None

    def due(self) -> None:
        """Work is gathering: hand it over in ``delay`` seconds, if not planned yet."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.now)

    def now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._hand_over()


class WorkerPool:
    """``nthreads`` threads named ``<name>-<i>``, each with a queue of ``qsize`` jobs."""

    def __init__(
        self,
        name: str,
        nthreads: int,
        qsize: int,
        io_loop: IOLoop,
        after_batch: Optional[Callable[[], None]] = None,
    ) -> None:
        if nthreads < 1 or qsize < 1:
            raise ValueError("%s: need at least one worker thread and a queue size of 1" % name)
        self.io_loop = io_loop
        self.after_batch = after_batch
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
        return self.submit_to(self.thread_of(key), done, func, *args)

    def thread_of(self, key: str) -> int:
        """The thread that runs the jobs of ``key`` (for :meth:`submit_to`)."""
        return zlib.crc32(key.encode("utf8", "surrogateescape")) % len(self.queues)

    def submit_to(self, thread: int, done: Done, func: Callable[..., Any], *args: Any) -> bool:
        """:meth:`submit` to thread number ``thread``: a job for several keys of one thread."""
        if self._stopped:
            return False
        q = self.queues[thread]
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
        item = q.get()
        while item is not _STOP:
            results = []
            while True:
                done, func, args = item
                try:
                    results.append((done, func(*args), None))
                except Exception as ex:
                    results.append((done, None, ex))
                if len(results) >= BATCH:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    break
            if self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception as ex:  # reported with the batch's last job
                    results[-1] = (results[-1][0], None, ex)
            self.io_loop.add_callback(_hand_back, results)
            if item is not _STOP:
                item = q.get()


def _hand_back(results: List[Any]) -> None:
    """On the loop: each job's ``done(result, error)``, in the order they ran."""
    for done, result, error in results:
        done(result, error)
