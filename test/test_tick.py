"""cc.tick: timers of one period fire together, whenever each was started; none stops on an error."""

import asyncio
import unittest

from cc.tick import Ticker, next_multiple

PERIOD = 0.05


class TestTicker(unittest.TestCase):
    def run_loop(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 60))

    def test_tickers_started_apart_fire_in_one_pass_of_the_loop(self):
        """What lets an idle process wake once for all its timers of a period."""

        async def scenario():
            loop = asyncio.get_running_loop()
            marks = set()
            fired = {"a": [], "b": []}
            done = asyncio.Event()

            def tick(name):
                # a mark lives until the next pass: a partner that fired in this pass sees it
                fired[name].append(bool(marks))
                marks.add(name)
                loop.call_soon(marks.discard, name)
                if len(fired["b"]) >= 3 and len(fired["a"]) > len(fired["b"]):
                    done.set()

            a = Ticker(PERIOD, lambda: tick("a"))
            a.start()
            await asyncio.sleep(PERIOD * 1.37)  # off the grid
            b = Ticker(PERIOD, lambda: tick("b"))
            b.start()
            await done.wait()
            a.stop()
            b.stop()
            return fired

        fired = self.run_loop(scenario())
        together = sum(fired["a"]) + sum(fired["b"])
        # every tick of b came in a pass with one of a: one of each pair saw the other
        self.assertEqual(together, len(fired["b"]), fired)

    def test_a_failing_callback_is_logged_and_the_ticker_goes_on(self):
        async def scenario():
            calls = []
            done = asyncio.Event()

            def tick():
                calls.append(1)
                if len(calls) == 3:
                    done.set()
                raise RuntimeError("boom")

            ticker = Ticker(PERIOD, tick)
            ticker.start()
            await done.wait()
            ticker.stop()
            return len(calls)

        with self.assertLogs("cc.tick", "ERROR") as logs:
            self.assertEqual(self.run_loop(scenario()), 3)
        self.assertIn("boom", logs.output[0])

    def test_stopped_ticker_does_not_fire(self):
        async def scenario():
            calls = []
            ticker = Ticker(PERIOD, lambda: calls.append(1))
            ticker.start()
            ticker.stop()
            # a later ticker of the same period has fired: the stopped one's moment has passed
            fired = asyncio.Event()
            later = Ticker(PERIOD, fired.set)
            later.start()
            await fired.wait()
            await asyncio.sleep(0)
            later.stop()
            return calls

        self.assertEqual(self.run_loop(scenario()), [])

    def test_next_multiple(self):
        self.assertEqual(next_multiple(25.0, 10), 30)
        self.assertEqual(next_multiple(30.0, 10), 40)  # after, not at
        self.assertEqual(next_multiple(0.3, 0.25), 0.5)

    def test_period_must_be_positive(self):
        with self.assertRaises(ValueError):
            Ticker(0, lambda: None)


if __name__ == "__main__":
    unittest.main()
