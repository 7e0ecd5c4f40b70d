"""A daemon for testing the daemon base: says hello, asks its cc for an echo, logs the answer."""

import asyncio

from cc.daemon import CCDaemon, run_daemon
from cc.msgtypes import EchoRequestMessage

CC_DAEMON = "EchoDaemon"


class EchoDaemon(CCDaemon):
    def start_work(self):
        self.log.info("hello from %s", self.job_name)
        self.io_loop.add_callback(self.ask)

    def stop_work(self):
        delay = self.cf.getfloat("stop-delay", 0)  # a daemon slow to stop
        return asyncio.sleep(delay) if delay else None

    async def ask(self):
        timeout = self.cf.getfloat("echo-timeout", 5)
        reply = await self.query(EchoRequestMessage(target="daemon").to_message(), timeout)
        self.stats.inc("echo.asked")
        self.log.info("echo answered: %s", reply.type if reply else "nothing")


if __name__ == "__main__":
    run_daemon(EchoDaemon)
