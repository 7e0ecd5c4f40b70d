"""CCStream's batch receive: what one wake-up drains, in order and bounded."""

import asyncio
import unittest

import zmq
from tornado.ioloop import IOLoop

from cc.stats import Stats
from cc.stream import BATCH_BYTES, CCStream


class TestBatchReceive(unittest.TestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.loop = IOLoop()
        self.addCleanup(self.loop.close)
        self.addCleanup(self.context.destroy, 0)

    def test_batches_keep_order_and_bounds(self):
        """Every message arrives once, in the order sent; a batch holds at most ``batch``
        messages, and no more bytes than the bound but for its last message."""
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.RCVHWM, 0)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.connect("tcp://127.0.0.1:%d" % port)
        large = BATCH_BYTES // 3 + 1
        sent = [b"%d" % i + b"x" * (large if i % 3 == 2 else 10) for i in range(120)]
        for payload in sent:
            dealer.send_multipart([b"", payload])
        batches = []
        stream = CCStream(router, self.loop, Stats(), batch=16)
        self.addCleanup(stream.close, 0)
        stream.on_recv_batch(batches.append)

        async def all_received():
            while sum(map(len, batches)) < len(sent):
                await asyncio.sleep(0.01)

        self.loop.run_sync(all_received, timeout=30)
        got = [frames[-1] for batch in batches for frames in batch]
        self.assertEqual(got, sent)
        self.assertTrue(any(len(batch) > 1 for batch in batches), "never more than one")
        for batch in batches:
            self.assertLessEqual(len(batch), 16)
            sizes = [sum(map(len, frames)) for frames in batch]
            self.assertLess(sum(sizes[:-1]), BATCH_BYTES)


if __name__ == "__main__":
    unittest.main()
