"""CCStream's pace (the server's batch-wait) on inproc sockets, the loop running."""

import threading
import time
import unittest

import zmq
from tornado.ioloop import IOLoop

from cc.stats import Stats
from cc.stream import UNPACED_DRAINS, CCStream


class TestPace(unittest.TestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, 0)
        self.loop = IOLoop()
        self.addCleanup(self.loop.close)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.bind("inproc://pace")
        self.dealer = self.context.socket(zmq.DEALER)
        self.dealer.connect("inproc://pace")
        self.batches = []

    def stream(self, pace, on_batch):
        stream = CCStream(self.router, self.loop, Stats(), pace=pace)
        self.addCleanup(stream.close, 0)
        stream.on_recv_batch(on_batch)
        self.loop.call_later(60, self.loop.stop)  # a bound: a hung test fails below
        return stream

    def test_a_client_that_waits_for_each_reply_is_not_held(self):
        """A request sent only once the last was answered: waiting gathers nothing, so one
        wait is tried, not one per request."""
        requests = 50

        def answer(batch):
            self.batches.append(len(batch))
            for frames in batch:
                stream.send_multipart(frames)  # the reply
            if sum(self.batches) == requests:
                self.loop.stop()

        stream = self.stream(1.0, answer)

        def client():
            self.dealer.setsockopt(zmq.RCVTIMEO, 30000)
            for n in range(requests):
                self.dealer.send_multipart([b"", b"req", b"%d" % n])
                self.dealer.recv_multipart()

        thread = threading.Thread(target=client)
        thread.start()
        self.loop.start()
        thread.join()
        self.assertEqual(sum(self.batches), requests)
        self.assertLessEqual(stream.paced, 1, "a wait for each request")
        self.assertLess(requests, UNPACED_DRAINS)

    def test_messages_that_keep_coming_are_taken_many_at_a_wake_up(self):
        messages = 50

        def take(batch):
            self.batches.append(len(batch))
            if sum(self.batches) == messages:
                self.loop.stop()

        stream = self.stream(0.2, take)

        def sender():
            for n in range(messages):
                self.dealer.send_multipart([b"", b"msg", b"%d" % n])
                time.sleep(0.001)

        thread = threading.Thread(target=sender)
        thread.start()
        self.loop.start()
        thread.join()
        self.assertEqual(sum(self.batches), messages)
        self.assertGreater(stream.paced, 0)
        self.assertLess(len(self.batches), messages / 2, self.batches)


if __name__ == "__main__":
    unittest.main()
