"""The original's task scenario: cc-task -> taskrouter -> proxy -> local cc -> taskexec -> task."""

import os
import re
import signal
import subprocess
import sys

from harness import CCTestCase, ccserver_section, child_env, wait_for

ROUTER = ccserver_section("router") + """
[routes]
task = h:taskrouter

[h:taskrouter]
handler = taskrouter
"""

HOST = ccserver_section("host", role="local") + """
[routes]
task = h:proxy
job = h:jobmgr
log = h:locallog

[h:proxy]
handler = proxy
remote-cc = {router}

[h:locallog]
handler = locallogger

[h:jobmgr]
handler = jobmgr
daemons = d:taskrunner
keepalive-period = 0.5
restart-delay = 0.2

[d:taskrunner]
module = cc.daemon.taskrunner
local-id = testhost
reg-period = 0.5
task-heartbeat = 0.3
stats-period = 60

[cc.task.sample]
"""


class TestTasks(CCTestCase):
    def setUp(self):
        super().setUp()
        self.router = self.start_server("router", ROUTER)
        self.host = self.start_server("host", HOST, router=self.router.endpoint)
        self.router.wait_stat("task.register", timeout=15)
        self.client_ini = os.path.join(self.tmp, "taskclient.ini")
        with open(self.client_ini, "w", encoding="utf8") as f:
            f.write("[taskclient]\ncc = %s\ntimeout = 5\nretries = 2\n" % self.router.endpoint)

    def cc_task(self, *args, timeout=30):
        return self.run_command(
            [sys.executable, "-m", "cc.taskclient", self.client_ini, *args], timeout=timeout
        )

    def send(self, *params, timeout=30):
        return self.cc_task("--send", "task_host=testhost", *params, timeout=timeout)

    def test_list_and_show(self):
        result = self.cc_task("--list")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("cc.task.sample - Sample task", result.stdout)
        result = self.cc_task("--show", "cc.task.sample", "cc.task.nonexist")
        self.assertIn("Params", result.stdout)
        self.assertIn("cc.task.nonexist - not found", result.stdout)
        result = self.cc_task()
        self.assertEqual(result.returncode, 1)
        self.assertIn("Need --list, --show or --send", result.stderr)

    def test_sample_task_finishes_after_feedback(self):
        result = self.send("task_handler=cc.task.sample", "cmd=test")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        out = result.stdout
        for expected in (
            "reply: forwarded",
            "reply: starting",
            "reply: launched",
            "reply: running",
            '>> {"i": 1}',
            '>> {"i": 3}',
            "task .* done",
            r"reply: finished \(0\)",
            "done",
        ):
            self.assertRegex(out, expected)
        order = [out.index(s) for s in ("starting", "launched", '{"i": 1}', '{"i": 3}', "finished")]
        self.assertEqual(order, sorted(order))

    def test_crashing_task_fails_with_exit_status(self):
        result = self.send("task_handler=cc.task.sample", "cmd=crash-run", "delay=0")
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("reply: failed (1)", result.stdout)
        self.assertIn("RuntimeError: crash-run requested", result.stdout)

    def test_crash_launch_runs_normally(self):
        result = self.send("task_handler=cc.task.sample", "cmd=crash-launch", "delay=0")
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertIn("finished", result.stdout)

    def test_unconfigured_module_fails(self):
        result = self.send("task_handler=cc.task.nonexist")
        self.assertEqual(result.returncode, 1)
        self.assertIn("reply: failed (-1)", result.stdout)
        self.assertIn("Task module 'cc.task.nonexist' not configured", result.stdout)

    def test_unknown_host_gets_error(self):
        result = self.cc_task("--send", "task_host=nohost", "task_handler=cc.task.sample")
        self.assertEqual(result.returncode, 1)
        self.assertIn("error: cannot route to nohost (no-route)", result.stdout)

    def test_duplicate_task_is_not_run_twice_and_tasks_run_in_parallel(self):
        first = self._popen("task_id=dup1", "delay=0.5")
        other = self._popen("task_id=par2", "delay=0.5")
        wait_for(
            lambda: "task dup1: cc.task.sample launched" in self.host.log_text(),
            what="dup1 launched",
        )
        # a resend (as a client does after a timeout) takes over the replies
        again = self.send("task_handler=cc.task.sample", "task_id=dup1", "delay=0.5")
        self.assertEqual(again.returncode, 0, again.stdout)
        self.assertIn("reply: finished", again.stdout)
        out, _ = other.communicate(timeout=30)
        self.assertEqual(other.returncode, 0, out)
        log = self.host.log_text()
        launches = re.findall(r"stdout: .* task dup1: cc.task.sample launched", log)
        self.assertEqual(len(launches), 1)
        first.kill()

    def test_killed_runner_is_restarted_and_registers_again(self):
        pid = int(self.host.wait_log(r"Job d:taskrunner started: pid (\d+)").group(1))
        registered = self.router.stats_total()["task.register"]
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: len(re.findall(r"Job d:taskrunner started", self.host.log_text())) == 2,
            what="restart",
        )
        self.router.wait_stat("task.register", registered + 2)
        result = self.send("task_handler=cc.task.sample", "delay=0")
        self.assertEqual(result.returncode, 0, result.stdout)

    def _popen(self, *params):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cc.taskclient",
                self.client_ini,
                "--send",
                "task_host=testhost",
                "task_handler=cc.task.sample",
                *params,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
            stdin=subprocess.DEVNULL,
        )
        self.addCleanup(_reap, proc)
        return proc


def _reap(proc):
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
