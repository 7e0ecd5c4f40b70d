"""Supervision policy without processes: transitions, back-off, hang detection."""

import unittest

from cc.backoff import Backoff
from cc.jobs.states import JobState, StateError, check_transition, gives_up, keepalive_overdue


class TestTransitions(unittest.TestCase):
    def test_life_cycle(self):
        path = [
            JobState.STOPPED,
            JobState.STARTING,
            JobState.RUNNING,
            JobState.STOPPING,
            JobState.BACKOFF,
            JobState.STARTING,
            JobState.BACKOFF,
            JobState.STOPPED,
        ]
        for old, new in zip(path, path[1:]):
            check_transition(old, new)

    def test_fatal_waits_for_reload_or_stop(self):
        check_transition(JobState.STARTING, JobState.FATAL)
        check_transition(JobState.FATAL, JobState.STARTING)
        check_transition(JobState.FATAL, JobState.STOPPED)
        for old in (JobState.RUNNING, JobState.BACKOFF, JobState.STOPPING):
            with self.assertRaises(StateError):
                check_transition(old, JobState.FATAL)  # only a start that failed gives up

    def test_gives_up_after_start_retries_failed_starts(self):
        self.assertFalse(gives_up(2, 3))
        self.assertTrue(gives_up(3, 3))
        self.assertFalse(gives_up(1000, 0))  # 0: never

    def test_illegal_moves_raise(self):
        for old, new in [
            (JobState.STOPPED, JobState.RUNNING),
            (JobState.BACKOFF, JobState.RUNNING),
            (JobState.STOPPING, JobState.RUNNING),
            (JobState.RUNNING, JobState.STARTING),
        ]:
            with self.assertRaises(StateError):
                check_transition(old, new)


class TestBackoff(unittest.TestCase):
    def test_doubles_up_to_cap_and_never_gives_up(self):
        backoff = Backoff(base=1, cap=10, reset_after=60, jitter=0)
        delays = [backoff.next_delay(0.1) for _ in range(8)]
        self.assertEqual(delays, [1, 2, 4, 8, 10, 10, 10, 10])
        self.assertTrue(backoff.at_cap)

    def test_long_run_resets(self):
        backoff = Backoff(base=1, cap=100, reset_after=60, jitter=0)
        for _ in range(5):
            backoff.next_delay(1)
        self.assertEqual(backoff.next_delay(61), 1)
        self.assertEqual(backoff.next_delay(1), 2)

    def test_jitter_bounds(self):
        low = Backoff(base=10, cap=100, reset_after=60, jitter=0.2, rand=lambda: 0.0)
        high = Backoff(base=10, cap=100, reset_after=60, jitter=0.2, rand=lambda: 1.0)
        self.assertAlmostEqual(low.next_delay(0), 8)
        self.assertAlmostEqual(high.next_delay(0), 12)
        capped = Backoff(base=10, cap=10, reset_after=60, jitter=0.2, rand=lambda: 1.0)
        self.assertEqual(capped.next_delay(0), 10)

    def test_huge_failure_counts_do_not_overflow(self):
        backoff = Backoff(base=1, cap=300, reset_after=60, jitter=0)
        backoff.failures = 10**6
        self.assertEqual(backoff.next_delay(0), 300)


class TestKeepalive(unittest.TestCase):
    def test_overdue(self):
        self.assertIsNone(keepalive_overdue(None, 100, 5))  # never sent one: not judged
        self.assertIsNone(keepalive_overdue(96, 100, 5))
        self.assertEqual(keepalive_overdue(90, 100, 5), 10)
        self.assertIsNone(keepalive_overdue(0, 100, 0))  # 0 disables
