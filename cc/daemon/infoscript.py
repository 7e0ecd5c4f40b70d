"""infoscript: run a command periodically and send its output as an infofile.

``python -m cc.daemon.infoscript config.ini d:infoscript``
"""

import asyncio
import os
import signal
import time

from cc.daemon import CCDaemon, run_daemon
from cc.files import infomsg
from cc.files.infomsg import InfofileEncoder
from cc.options import REQUIRED, Option
from cc.tick import next_multiple

CC_DAEMON = "InfoScript"


class OutputTooLarge(Exception):
    """The command wrote more than ``max-output`` bytes."""


async def read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    """All of ``stream`` until EOF; :class:`OutputTooLarge` once it passes ``limit`` bytes."""
    parts = []
    room = limit
    while True:
        part = await stream.read(min(room + 1, 1024 * 1024))
        if not part:
            return b"".join(parts)
        room -= len(part)
        if room < 0:
            raise OutputTooLarge()
        parts.append(part)


class InfoScript(CCDaemon):
    """Runs ``info-script`` (a shell command) every ``info-period`` seconds.

    Its standard output and error become ``pub.infofile`` named
    ``info-name``, with the time of the run as ``mtime``.  Runs start at
    fixed intervals (start to start); a run still going after
    ``info-timeout`` seconds or writing more than ``max-output`` bytes is
    killed, with its whole process group.  A non-zero exit, a timeout or too
    much output is logged and counted (``infoscript.fails``); nothing is
    sent then.  The command runs as an
    asyncio subprocess: the loop never waits for it.

    ::

        [d:infoscript]
        module = cc.daemon.infoscript
        info-script = ps axuw
        info-period = 60
        info-name = ps.txt
        #info-timeout = 60
        #max-output = 32M
        #compression = none
        #compression-level =
        #msg-suffix =
        #use-blob = yes
    """

    OPTIONS = (
        Option("info-script", "str", REQUIRED, "the command whose output is sent",
               example="/usr/local/bin/host-info"),
        Option("info-period", "seconds", REQUIRED, "seconds between runs", example="300"),
        Option("info-name", "str", REQUIRED, "the file name the output is sent as",
               example="host-info.txt"),
        Option("info-timeout", "seconds", 60, "seconds a run may take"),
        Option("max-output", "bytes", "32M", "output larger than this is not sent"),
    ) + infomsg.OPTIONS  # fmt: skip

    def reload(self) -> None:
        super().reload()
        self.command = self.cf.get("info-script")
        self.period = self.cf.getfloat("info-period")
        self.name = self.cf.get("info-name")
        self.timeout = self.cf.getfloat("info-timeout", 60)
        self.max_output = self.cf.getbytes("max-output", "32M")
        self.encoder = InfofileEncoder(self.cf)

    def start_work(self) -> None:
        self.spawn(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # the next run on a multiple of the period, with the keepalive's wake-up
            due = next_multiple(loop.time(), self.period)
            try:
                await self.run_script()
            except OSError as ex:
                self.stats.inc("infoscript.fails")
                self.log.error("cannot run %r: %s", self.command, ex)
            now = loop.time()
            if due > now:  # else the run took longer: start again now
                await asyncio.sleep(due - now)

    async def run_script(self) -> None:
        started = time.time()
        proc = await asyncio.create_subprocess_shell(
            self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
        try:
            output = await asyncio.wait_for(self._output(proc), self.timeout)
        except (asyncio.TimeoutError, OutputTooLarge) as ex:
            self._kill(proc)
            await proc.communicate()  # the rest of a full pipe, or wait() may never return
            self.stats.inc("infoscript.fails")
            if isinstance(ex, OutputTooLarge):
                why = "wrote more than max-output (%d bytes)" % self.max_output
            else:
                why = "did not finish in %ss" % self.timeout
            self.log.error("%r %s, killed", self.command, why)
            return
        except asyncio.CancelledError:
            self._kill(proc)
            raise
        self.stats.inc("infoscript.bytes.read", len(output))
        if proc.returncode != 0:
            self.stats.inc("infoscript.fails")
            self.log.error(
                "%r failed with exit status %s: %s",
                self.command,
                proc.returncode,
                output.decode("utf8", "replace")[-2000:],
            )
            return
        packed = await self.run_blocking(self.encoder.pack, output)
        self.publish(self.encoder.message(self.name, started, packed))
        self.stats.inc("infoscript.count")
        self.stats.inc("infoscript.bytes.sent", len(packed))

    async def _output(self, proc: asyncio.subprocess.Process) -> bytes:
        """What the command wrote, once it has exited (one deadline covers both)."""
        assert proc.stdout is not None
        output = await read_bounded(proc.stdout, self.max_output)
        await proc.wait()
        return output

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    run_daemon(InfoScript)
