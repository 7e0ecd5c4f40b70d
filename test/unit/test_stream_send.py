"""CCStream's send side on inproc sockets: send, wait for a full peer, queue, drop and count.

The loop is made but never run: sending never waits for it.
"""

import unittest

import zmq
from tornado.ioloop import IOLoop

from cc.peerwaits import PeerWaits, frames_cost
from cc.stats import Stats
from cc.stream import CCStream


class StreamCase(unittest.TestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, 0)
        self.loop = IOLoop()
        self.addCleanup(self.loop.close)
        self.stats = Stats()

    def stream(self, sock, **kw):
        stream = CCStream(sock, self.loop, self.stats, **kw)
        self.addCleanup(stream.close, 0)
        return stream

    def router_with_peer(self, hwm):
        """A ROUTER and a DEALER ``peer`` it knows (the peer has said hello)."""
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.SNDHWM, hwm)
        router.bind("inproc://send")
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVHWM, hwm)
        dealer.setsockopt(zmq.IDENTITY, b"peer")
        dealer.connect("inproc://send")
        dealer.send_multipart([b"", b"hello"])
        router.setsockopt(zmq.RCVTIMEO, 10000)
        self.assertEqual(router.recv_multipart(), [b"peer", b"", b"hello"])
        return router, dealer

    def totals(self):
        return self.stats.totals()


class TestRouterSend(StreamCase):
    def test_sent_to_a_known_peer(self):
        router, dealer = self.router_with_peer(10)
        stream = self.stream(router)
        stream.send_multipart([b"peer", b"", b"one"])
        dealer.setsockopt(zmq.RCVTIMEO, 10000)
        self.assertEqual(dealer.recv_multipart(), [b"", b"one"])
        self.assertEqual(self.totals().get("count.dropped.unroutable", 0), 0)

    def test_unknown_peer_dropped_as_unroutable(self):
        router, _ = self.router_with_peer(10)
        stream = self.stream(router)
        with self.assertLogs("cc.stream", "WARNING"):
            stream.send_multipart([b"nobody", b"", b"x"])
        self.assertEqual(self.totals()["count.dropped.unroutable"], 1)

    def test_full_peer_waits_in_order_then_dropped_past_the_bound(self):
        router, dealer = self.router_with_peer(1)
        sent = [[b"peer", b"", b"%02d" % n + b"x" * 100] for n in range(40)]
        waits = PeerWaits(3 * frames_cost(sent[0]), 10**6)  # three messages at the most
        stream = self.stream(router, waits=waits)
        with self.assertLogs("cc.stream", "WARNING"):
            for frames in sent:
                stream.send_multipart(frames)
        totals = self.totals()
        self.assertEqual(waits.count, 3)
        self.assertEqual(totals["count.waited.peer_full"], 3)
        dropped = totals["count.dropped.peer_full"]
        dealer.setsockopt(zmq.RCVTIMEO, 10000)
        got = [dealer.recv_multipart()[1][:2]]  # the pipe took one at least
        try:  # the rest are in the pipe already: inproc writes before send returns
            while True:
                got.append(dealer.recv_multipart(zmq.NOBLOCK)[1][:2])
        except zmq.Again:
            pass
        self.assertEqual(len(got) + 3 + dropped, 40)
        self.assertEqual(got, [b"%02d" % n for n in range(len(got))], "in order")
        with self.assertLogs("cc.stream", "WARNING"):
            stream.close(0)
        self.assertEqual(self.totals()["count.dropped.closed"], 3, "what waited is counted")


class TestDealerSend(StreamCase):
    def test_no_peer_queues_then_drops_when_full(self):
        dealer = self.context.socket(zmq.DEALER)
        stream = self.stream(dealer, qmaxsize=2, name="link")
        stream.send_multipart([b"", b"a"])
        stream.send_multipart([b"", b"b"])
        self.assertEqual(stream.queued, 2)
        with self.assertLogs("cc.stream", "WARNING") as logs:
            stream.send_multipart([b"", b"c"])
        self.assertIn("link: message dropped (queue_full)", logs.output[0])
        self.assertEqual(self.totals()["count.dropped.queue_full"], 1)
        self.assertEqual(stream.take_queued(), [[b"", b"a"], [b"", b"b"]])
        self.assertEqual(stream.queued, 0)

    def test_bytes_bound(self):
        stream = self.stream(self.context.socket(zmq.DEALER), qmaxsize=100, qmaxbytes=300)
        stream.send_multipart([b"x" * 200])
        with self.assertLogs("cc.stream", "WARNING"):
            stream.send_multipart([b"y" * 200])
        self.assertEqual(stream.queued, 1)
        self.assertEqual(len(stream.take_queued()), 1)

    def test_closed_stream_drops(self):
        stream = CCStream(self.context.socket(zmq.DEALER), self.loop, self.stats)
        stream.close(0)
        with self.assertLogs("cc.stream", "WARNING"):
            stream.send_multipart([b"", b"late"])
        self.assertEqual(self.totals()["count.dropped.closed"], 1)
        self.assertTrue(stream.closed)


if __name__ == "__main__":
    unittest.main()
