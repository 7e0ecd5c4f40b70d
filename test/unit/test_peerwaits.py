"""cc.peerwaits.PeerWaits: replies waiting for full peers, in order, bounded per peer and in all."""

import unittest

from cc.peerwaits import FRAME_OVERHEAD, PeerWaits, frames_cost


def msg(peer, n, size=100):
    return [peer, b"", b"%d" % n + b"x" * (size - 1)]


class TestPeerWaits(unittest.TestCase):
    def test_cost_is_bytes_and_a_little_per_frame(self):
        self.assertEqual(frames_cost([b"ab", b"", b"cde"]), 5 + 3 * FRAME_OVERHEAD)

    def test_order_kept_per_peer_and_released_in_order(self):
        waits = PeerWaits(10**6, 10**6)
        for n in range(3):
            self.assertTrue(waits.add(msg(b"A", n)))
        waits.add(msg(b"B", 9))
        self.assertIn(b"A", waits)
        queues = {q[0][0]: q for q in waits.queues()}
        self.assertEqual([f[2][:1] for f in queues[b"A"]], [b"0", b"1", b"2"])
        self.assertEqual(waits.count, 4)
        while queues[b"A"]:
            waits.release(queues[b"A"].popleft())
        self.assertNotIn(b"A", waits, "an emptied peer is forgotten")
        self.assertEqual((waits.count, waits.nbytes), (1, frames_cost(msg(b"B", 9))))

    def test_per_peer_bound(self):
        cost = frames_cost(msg(b"A", 0))
        waits = PeerWaits(2 * cost, 10 * cost)
        self.assertTrue(waits.add(msg(b"A", 0)))
        self.assertTrue(waits.add(msg(b"A", 1)))
        self.assertFalse(waits.add(msg(b"A", 2)), "a third would pass the peer's bound")
        self.assertTrue(waits.add(msg(b"B", 0)), "another peer still has room")

    def test_total_bound(self):
        cost = frames_cost(msg(b"A", 0))
        waits = PeerWaits(2 * cost, 3 * cost)
        for peer in (b"A", b"B", b"C"):
            self.assertTrue(waits.add(msg(peer, 0)))
        self.assertFalse(waits.add(msg(b"D", 0)))
        self.assertEqual(waits.count, 3)

    def test_clear_returns_what_waited(self):
        waits = PeerWaits()
        waits.add(msg(b"A", 0))
        waits.add(msg(b"B", 1))
        self.assertEqual(len(waits.clear()), 2)
        self.assertFalse(waits)
        self.assertEqual((waits.count, waits.nbytes), (0, 0))

    def test_summary_names_the_busiest_peer_first(self):
        waits = PeerWaits()
        waits.add(msg(b"A", 0))
        waits.add(msg(b"B", 0, size=500))
        lines = waits.summary()
        self.assertEqual(lines[:2], ["peers: 2", "messages: 2"])
        self.assertTrue(lines[3].startswith("peer %s: 1 messages" % b"B".hex()), lines)


if __name__ == "__main__":
    unittest.main()
