"""The original's task scenario: cc-task -> taskrouter -> proxy -> local cc -> taskexec -> task."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid

from harness import CCTestCase, ccserver_section, child_env, pid_alive, wait_for

from cc.message import CCMessage

ROUTER = ccserver_section("router") + """
[routes]
task = h:taskrouter

[h:taskrouter]
handler = taskrouter
task-ack-timeout = 3
reply-timeout = 3
maint-period = 0.2
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
        self.assertEqual(result.returncode, 2)
        self.assertIn("need --send, --hosts, --list or --show", result.stderr)

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
        launches = re.findall(r"task dup1: cc.task.sample launched", log)
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

    # -- no task vanishes ------------------------------------------------------------

    def runner_pid(self, count=1):
        def pids():
            return re.findall(r"Job d:taskrunner started: pid (\d+)", self.host.log_text())

        return int(wait_for(lambda: len(pids()) >= count and pids()[-1], what="runner %d" % count))

    def start_task(self, uid, delay="0.5"):
        """Send a task from a raw client; the client, once ``forwarded`` came back."""
        client = self.dealer(self.router.endpoint)
        fields = {"task_host": "testhost", "task_handler": "cc.task.sample", "task_id": uid,
                  "delay": delay}  # fmt: skip
        client.send_multipart(CCMessage.build("task.send." + uid, fields).frames)
        self.assertEqual(self.next_status(client), "forwarded")
        return client

    def next_status(self, client, timeout=10):
        return CCMessage(self.recv(client, timeout)).get_body()["status"]

    def final_answers(self, client, within, quiet=1.0):
        """Statuses up to the final one (within ``within`` s); then nothing for ``quiet`` s."""
        statuses = []
        deadline = time.monotonic() + within
        while not statuses or statuses[-1] not in ("finished", "failed", "stopped"):
            msg = CCMessage(self.recv(client, max(0.1, deadline - time.monotonic())))
            statuses.append(msg.get_body()["status"])
        self.assert_silent(client, quiet)
        return statuses

    def test_testmsg_task_sent_twice_runs_once_with_one_final_answer(self):
        """The original's testmsg.py task: task.send.<uuid1>, task_id 55, the message twice."""
        client = self.dealer(self.router.endpoint)
        uid = str(uuid.uuid1())
        fields = {"task_host": "testhost", "task_handler": "cc.task.sample", "task_id": 55,
                  "cmd": "run", "delay": "0.2"}  # fmt: skip
        frames = CCMessage.build("task.send." + uid, fields).frames
        client.send_multipart(frames)
        client.send_multipart(frames)
        replies = []
        while not replies or replies[-1]["status"] not in ("finished", "failed", "stopped"):
            replies.append(CCMessage(self.recv(client)).get_body())
        self.assert_silent(client, 1.0)
        self.assertEqual(replies[-1]["status"], "finished", replies)
        self.assertEqual({r["task_id"] for r in replies}, {55})
        self.assertEqual([r["status"] for r in replies].count("launched"), 1)
        launched = r"task %s: cc.task.sample launched" % uid
        self.assertEqual(len(re.findall(launched, self.host.log_text())), 1)

    def test_runner_killed_between_forwarded_and_starting(self):
        pid = self.runner_pid()
        os.kill(pid, signal.SIGSTOP)  # the task waits in its socket, never read
        client = self.start_task("lost1")
        os.kill(pid, signal.SIGKILL)
        # the restarted runner's registration or task-ack-timeout (3 s) ends it; not both
        statuses = self.final_answers(client, within=3 + 7, quiet=3.5)
        self.assertEqual(statuses, ["failed"])
        self.runner_pid(2)  # jobmgr started another, and the next task runs there
        result = self.send("task_handler=cc.task.sample", "delay=0")
        self.assertEqual(result.returncode, 0, result.stdout)

    def test_runner_killed_mid_task(self):
        proc = self._popen("task_id=lost2", "delay=2")
        wait_for(lambda: "task lost2: cc.task.sample launched" in self.host.log_text(),
                 what="lost2 launched")  # fmt: skip
        os.kill(self.runner_pid(), signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 1, out)
        self.assertIn("reply: failed", out)
        self.assertIn(">> the task runner on testhost restarted", out)
        self.assertNotIn("reply: finished", out)

    def test_host_cc_killed(self):
        running = self.start_task("lost3", delay="5")
        self.assertEqual(self.next_status(running), "starting")
        runner = self.runner_pid()
        self.host.stop(signal.SIGKILL)
        self.expected_exit["host"] = -signal.SIGKILL
        # sent to a host that is gone: not acknowledged; the one running: silent
        unacked = self.start_task("lost4")
        self.assertEqual(self.final_answers(unacked, within=3 + 7), ["failed"])
        self.assertEqual(self.final_answers(running, within=3 + 7)[-1], "failed")
        wait_for(lambda: not pid_alive(runner), what="the orphaned runner to exit")

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
