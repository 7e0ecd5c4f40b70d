"""jobmgr: real daemons as children, job.config, keepalives, restarts, hangs, no orphans."""

import os
import re
import signal

from harness import TEST_DIR, CCTestCase, ccserver_section, pid_alive, wait_for

JOBS = """
[routes]
job = h:jobmgr
log = h:locallog

[h:locallog]
handler = locallogger

[h:jobmgr]
handler = jobmgr
daemons = {daemons}
keepalive-period = 0.3
keepalive-timeout = 1.5
kill-grace = 1
stop-timeout = 2
restart-delay = 0.2

[d:echo]
module = plugins.echodaemon
echo-timeout = 1
stats-period = 60

[d:stubborn]
script = {scripts}/stubborn.sh
"""


def job_token(pid):
    """The job.config token jobmgr gave the job with ``pid``, from its environment."""
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    return env[b"CC_JOB_TOKEN"].decode()


class TestJobMgr(CCTestCase):
    def start_local(self, daemons="d:echo"):
        ini = ccserver_section("local", role="local") + JOBS
        return self.start_server(
            "local", ini, daemons=daemons, scripts=os.path.join(TEST_DIR, "scripts")
        )

    def job_pids(self, server, job):
        return [int(p) for p in re.findall(r"Job %s started: pid (\d+)" % job, server.log_text())]

    def wait_started(self, server, job, count=1):
        return wait_for(
            lambda: len(self.job_pids(server, job)) >= count and self.job_pids(server, job)[-1],
            what="%s start #%d" % (job, count),
        )

    def job_status(self, server, job):
        return server.job_status(job)

    def wait_keepalive_from(self, server, job, pid):
        def fresh():
            status = self.job_status(server, job)
            return (
                status.get("pid") == str(pid)
                and status.get("state") == "RUNNING"
                and status.get("keepalive_age") not in (None, "-")
                and float(status["keepalive_age"]) < 1
            )

        wait_for(fresh, what="keepalives from %s pid %d" % (job, pid))

    def test_job_config_keepalives_and_state(self):
        server = self.start_local()
        pid = self.wait_started(server, "d:echo")
        # the daemon connected through the endpoint jobmgr gave it (the INI says port *)
        server.wait_log(r"\[local\.d:echo@\S+\] \S+ INFO hello from local\.d:echo")
        self.wait_keepalive_from(server, "d:echo", pid)
        server.wait_stat("jobmgr.keepalive", 3)
        sock = self.dealer(server.endpoint)
        reply = self.query(sock, "job.config", {"job_name": "d:echo"}, qid=b"Q0")
        self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "forbidden"))
        token = job_token(pid)  # a peer that can read the daemon's environment is the daemon
        reply = self.query(sock, "job.config", {"job_name": "d:echo", "token": token})
        self.assertEqual(reply.type, "job.config")
        body = reply.get_body()
        self.assertEqual(body["job_name"], "local.d:echo")
        self.assertEqual(body["config"]["module"], "plugins.echodaemon")
        self.assertEqual(body["config"]["echo-timeout"], "1")
        self.assertEqual(body["config"]["job_name"], "local.d:echo")
        reply = self.query(sock, "job.config", {"job_name": "local.d:echo", "token": token},
                           qid=b"Q2")  # fmt: skip
        self.assertEqual(reply.get_body()["config"]["module"], "plugins.echodaemon")
        reply = self.query(sock, "job.config", {"job_name": "d:nosuch"}, qid=b"Q3")
        self.assertEqual(reply.type, "error")
        self.assertEqual(reply.get_body()["code"], "unknown-job")
        reply = self.query(sock, "job.config", {}, qid=b"Q4")
        self.assertEqual(reply.get_body()["code"], "bad-request")
        self.assertEqual(self.job_status(server, "d:echo")["starts"], "1")
        # the daemon asked for its config itself, too
        server.wait_stat("jobmgr.config", 3)

    def test_killed_daemon_is_restarted_and_keeps_alive(self):
        server = self.start_local()
        pid = self.wait_started(server, "d:echo")
        self.wait_keepalive_from(server, "d:echo", pid)
        os.kill(pid, signal.SIGKILL)
        server.wait_log(r"Job d:echo exited with status -9 after [\d.]+ s; restarting in")
        new_pid = self.wait_started(server, "d:echo", 2)
        self.assertNotEqual(new_pid, pid)
        self.wait_keepalive_from(server, "d:echo", new_pid)
        self.assertEqual(self.job_status(server, "d:echo")["last_exit"], "-9")
        self.assertEqual(self.job_status(server, "d:echo")["starts"], "2")

    def test_stopped_daemon_is_found_hung_and_replaced(self):
        server = self.start_local()
        pid = self.wait_started(server, "d:echo")
        self.wait_keepalive_from(server, "d:echo", pid)
        os.kill(pid, signal.SIGSTOP)
        server.wait_log(r"Job d:echo \(pid %d\) hung: no keepalive for" % pid)
        new_pid = self.wait_started(server, "d:echo", 2)
        self.assertFalse(pid_alive(pid))
        self.wait_keepalive_from(server, "d:echo", new_pid)
        server.wait_stat("jobs.d:echo.hung", 1)

    def test_sigterm_leaves_no_process_behind(self):
        server = self.start_local("d:echo, d:stubborn")
        echo = self.wait_started(server, "d:echo")
        self.wait_keepalive_from(server, "d:echo", echo)
        stubborn = self.wait_started(server, "d:stubborn")
        grandchild = int(server.wait_log(r"Job d:stubborn stdout: grandchild (\d+)").group(1))
        self.assertTrue(pid_alive(grandchild))
        self.assertEqual(server.stop(signal.SIGTERM), 0)
        for pid in (echo, stubborn, grandchild):
            self.assertFalse(pid_alive(pid), "pid %d still alive" % pid)
        out = server.output()
        self.assertIn("Job d:stubborn did not stop in 2.0 s; KILL", out)
        self.assertRegex(out, r"Job d:echo stopped \(status 0\)")

    def test_sigint_stops_daemons(self):
        server = self.start_local()
        pid = self.wait_started(server, "d:echo")
        self.assertEqual(server.stop(signal.SIGINT), 0)
        self.assertFalse(pid_alive(pid))

    def test_crashing_job_backs_off(self):
        ini = ccserver_section("local", role="local") + JOBS.replace(
            "script = {scripts}/stubborn.sh", "script = /bin/false\nstart-retries = 0"
        )
        server = self.start_server("local", ini, daemons="d:stubborn")
        wait_for(lambda: len(self.job_pids(server, "d:stubborn")) >= 4, what="restarts")
        delays = [float(d) for d in re.findall(r"restarting in ([\d.]+) s", server.log_text())]
        # 0.2 s doubling, +-20 % jitter
        self.assertLess(delays[0], 0.25)
        self.assertGreaterEqual(delays[2], 0.6)  # 0.8 - 20 %, logged as %.1f
        self.assertLessEqual(delays[2], 1.0)

    def test_a_job_that_cannot_start_goes_fatal_until_reload(self):
        """As supervisor: start-retries exits before start-seconds, then no restarts."""
        ini = ccserver_section("local", role="local") + JOBS.replace(
            "script = {scripts}/stubborn.sh", "script = /bin/false\nstart-retries = 2"
        )
        self.allowed_log.append(r"d:stubborn FATAL")
        server = self.start_server("local", ini, daemons="d:stubborn")
        wait_for(lambda: self.job_status(server, "d:stubborn").get("state") == "FATAL",
                 what="FATAL in the infofile")
        self.assertEqual(self.job_status(server, "d:stubborn")["starts"], "2")
        self.assertIn("2 times in a row; not restarted until reload", server.log_text())
        fatal_count = server.wait_stat("jobs.d:stubborn.fatal")
        # longer than its next restart delay would be (0.8 s): the infofile is rewritten
        # (every 0.2 s) five times over, and it is still FATAL with two starts
        for _ in range(5):
            seen = os.stat(server.infofile).st_mtime_ns
            wait_for(lambda: os.stat(server.infofile).st_mtime_ns > seen, what="a rewrite")
        self.assertEqual(self.job_status(server, "d:stubborn")["state"], "FATAL")
        self.assertEqual(len(self.job_pids(server, "d:stubborn")), 2)
        server.send_signal(signal.SIGHUP)  # FATAL -> STARTING, two more tries
        server.wait_stat("jobs.d:stubborn.fatal", fatal_count + 1)
        self.assertEqual(len(self.job_pids(server, "d:stubborn")), 4)
        self.assertEqual(self.job_status(server, "d:stubborn")["state"], "FATAL")

    def test_reload_touches_only_the_jobs_that_changed(self):
        """SIGHUP as supervisorctl update: start added, stop removed, restart changed."""
        extra = "\n[d:two]\nmodule = plugins.echodaemon\n\n[d:gone]\nmodule = plugins.echodaemon\n"
        ini = ccserver_section("local", role="local") + JOBS + extra
        server = self.start_server(
            "local", ini, daemons="d:echo, d:two, d:gone", scripts=os.path.join(TEST_DIR, "scripts")
        )
        pids = {job: self.wait_started(server, job) for job in ("d:echo", "d:two", "d:gone")}
        with open(server.ini, encoding="utf8") as f:
            text = f.read()
        changed = text.replace(
            "daemons = d:echo, d:two, d:gone", "daemons = d:echo, d:two, d:three"
        )
        changed = changed.replace(
            "[d:two]\nmodule = plugins.echodaemon\n",
            "[d:two]\nmodule = plugins.echodaemon\necho-timeout = 2\n",
        )
        changed += "\n[d:three]\nmodule = plugins.echodaemon\n"

        # a broken job section refuses the whole reload: nothing is touched
        server.write_ini(changed.replace("[d:three]\nmodule = plugins.echodaemon", "[d:three]"))
        server.send_signal(signal.SIGHUP)
        server.wait_log(r"\[d:three\]: needs module = or script =")
        server.write_ini(changed)
        server.send_signal(signal.SIGHUP)
        server.wait_log(r"jobs reloaded: 1 kept, started d:three, restarted d:two, stopped d:gone")
        self.wait_started(server, "d:three")
        new_two = self.wait_started(server, "d:two", 2)
        self.assertNotEqual(new_two, pids["d:two"])
        wait_for(lambda: not pid_alive(pids["d:gone"]) and not pid_alive(pids["d:two"]))
        self.assertTrue(pid_alive(pids["d:echo"]))
        self.assertEqual(self.job_pids(server, "d:echo"), [pids["d:echo"]])
        self.assertEqual(self.job_pids(server, "d:gone"), [pids["d:gone"]])
        self.wait_keepalive_from(server, "d:two", new_two)
        sock = self.dealer(server.endpoint)
        token = job_token(new_two)
        reply = self.query(sock, "job.config", {"job_name": "d:two", "token": token})
        self.assertEqual(reply.get_body()["config"]["echo-timeout"], "2")
        self.assertEqual(server.stop(signal.SIGTERM), 0)
        for job in ("d:echo", "d:two", "d:three"):
            self.assertFalse(pid_alive(self.job_pids(server, job)[-1]), job)

    def test_two_reloads_while_a_job_is_still_stopping(self):
        """The second change replaces the first before it started; one process at a time."""
        server = self.start_local("d:stubborn")
        first = self.wait_started(server, "d:stubborn")
        with open(server.ini, encoding="utf8") as f:
            text = f.read()
        stubborn = "[d:stubborn]\nscript = %s/stubborn.sh\n" % os.path.join(TEST_DIR, "scripts")
        self.assertIn(stubborn, text)
        for value in ("1", "2"):  # stubborn ignores TERM: it is KILLed after stop-timeout, 2 s
            server.write_ini(text.replace(stubborn, stubborn + "x = %s\n" % value))
            server.send_signal(signal.SIGHUP)
            wait_for(
                lambda: server.log_text().count("restarted d:stubborn") == int(value),
                what="reload %s" % value,
            )
        second = self.wait_started(server, "d:stubborn", 2)
        log = server.log_text()
        self.assertLess(log.index("Job d:stubborn did not stop in 2.0 s; KILL"),
                        log.index("Job d:stubborn started: pid %d" % second))  # fmt: skip
        self.assertFalse(pid_alive(first))
        fields = {"job_name": "d:stubborn", "token": job_token(second)}
        reply = self.query(self.dealer(server.endpoint), "job.config", fields)
        self.assertEqual(reply.get_body()["config"]["x"], "2")
        self.assertEqual(len(self.job_pids(server, "d:stubborn")), 2)

    def test_jobmgr_refuses_remote_role(self):
        ini = ccserver_section("remote", role="remote") + JOBS
        server = self.write_server("remote", ini, daemons="d:echo", scripts="/x")
        result = self.run_command(server.command())
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot be run in role remote", result.stderr + server.output())
        self.servers.remove(server)

    def test_a_start_that_fails_after_jobmgr_stops_its_daemons(self):
        """metrics-http is set up after the handlers: its failure must not leave daemons behind."""
        ini = ccserver_section("local", role="local", metrics_http="127.0.0.1:nope") + JOBS
        scripts = os.path.join(TEST_DIR, "scripts")
        out = self.start_failing("local", ini, daemons="d:echo", scripts=scripts)
        self.assertIn("cannot start: metrics-http = 127.0.0.1:nope", out)
        pids = {int(p) for p in re.findall(r"Job d:echo started: pid (\d+)", out)}  # log, stderr
        self.assertEqual(len(pids), 1, out)
        self.assertFalse(pid_alive(pids.pop()), out)
