"""taskrouter: registration, routing to the host, relaying replies, errors, expiry."""

import signal
import time
import uuid

from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

ROUTER = ccserver_section("router") + """
[routes]
task = h:taskrouter

[h:taskrouter]
handler = taskrouter
route-lifetime = {lifetime}
reply-timeout = {reply_timeout}
task-ack-timeout = {ack_timeout}
maint-period = 0.1
"""


def task(task_id, host="testhost", **extra):
    fields = {"task_host": host, "task_handler": "cc.task.sample", "task_id": task_id}
    fields.update(extra)
    return fields


class TestTaskRouter(CCTestCase):
    def start_router(self, lifetime="3600", reply_timeout="60", ack_timeout="15"):
        timeouts = dict(lifetime=lifetime, reply_timeout=reply_timeout, ack_timeout=ack_timeout)
        return self.start_server("router", ROUTER, **timeouts)

    def register(self, router, host="testhost", runner=None, runner_id=None):
        runner = runner or self.dealer(router.endpoint)
        fields = {"host": host}
        if runner_id:
            fields["runner_id"] = runner_id
        runner.send_multipart(CCMessage.build("task.register", fields).frames)
        return runner

    def runner_says(self, runner, uid, status, task_id=None):
        fields = {"task_id": uid if task_id is None else task_id, "status": status}
        runner.send_multipart(CCMessage.build("task.reply." + uid, fields).frames)

    def replies(self, client, until_final=True, timeout=10):
        """(type, body) of each reply up to the first final one."""
        got = []
        while True:
            msg = CCMessage(self.recv(client, timeout))
            got.append((msg.type, msg.get_body()))
            if not until_final or msg.get_body().get("status") in ("finished", "failed", "stopped"):
                return got

    def send_task(self, client, fields, msgtype=None, qid=b"Q1"):
        msgtype = msgtype or "task.send." + fields.get("task_id", "x")
        client.send_multipart(CCMessage.build(msgtype, fields, route=[qid]).frames)

    def test_task_goes_to_registered_host_and_replies_come_back(self):
        router = self.start_router()
        runner = self.register(router)
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t1", cmd="test"))
        ack = CCMessage(self.recv(client))
        self.assertEqual(ack.route, [b"Q1"])
        self.assertEqual(ack.type, "task.reply.t1")
        self.assertEqual(ack.get_body()["status"], "forwarded")
        got = CCMessage(self.recv(runner))
        self.assertEqual(got.route, [])
        self.assertEqual(got.type, "task.send.t1")
        self.assertEqual(got.get_body()["cmd"], "test")
        for status in ("starting", "feedback", "finished"):
            runner.send_multipart(
                CCMessage.build("task.reply.t1", {"task_id": "t1", "status": status}).frames
            )
            reply = CCMessage(self.recv(client))
            self.assertEqual(reply.route, [b"Q1"])
            self.assertEqual(reply.get_body()["status"], status)
        router.wait_stat("task.reply", 3)

    def test_unknown_host_gets_error(self):
        router = self.start_router()
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t2", host="nohost"))
        reply = CCMessage(self.recv(client))
        self.assertEqual(reply.type, "error")
        self.assertEqual(reply.get_body()["code"], "no-route")
        self.assertIn("cannot route to nohost", reply.get_body()["msg"])

    def test_malformed_tasks_get_errors(self):
        router = self.start_router()
        self.register(router)
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        bad = [
            ("task.send.t3", {"task_host": "testhost", "task_id": "t3"}),  # no handler
            ("task.send.t4", task("t4", task_host=5)),
            ("task.send.t5", task([5])),  # task_id not a scalar
            ("task.send.t6", task({"id": 6})),
            ("task.send", task("t7")),
            ("task.send.t8.x", task("t8")),
        ]
        for n, (msgtype, fields) in enumerate(bad):
            qid = b"Q%d" % n
            self.send_task(client, fields, msgtype, qid)
            reply = CCMessage(self.recv(client))
            self.assertEqual(reply.route, [qid])
            self.assertEqual(reply.type, "error", msgtype)
            self.assertEqual(reply.get_body()["code"], "bad-task")
        router.wait_stat("task.invalid", len(bad))

    def test_reregistration_moves_the_route_and_routes_expire(self):
        router = self.start_router(lifetime="1")
        old = self.register(router)
        router.wait_stat("task.register")
        new = self.register(router)
        router.wait_stat("task.register", 2)
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t8"))
        self.assertEqual(CCMessage(self.recv(client)).get_body()["status"], "forwarded")
        self.assertEqual(CCMessage(self.recv(new)).type, "task.send.t8")
        self.assert_silent(old, 0.2)
        router.wait_stat("dropped_routes", 1, timeout=5)
        lost = CCMessage(self.recv(client))  # t8, never acknowledged, ends with the route
        self.assertEqual((lost.type, lost.get_body()["status"]), ("task.reply.t8", "failed"))
        self.send_task(client, task("t9"), qid=b"Q9")
        reply = CCMessage(self.recv(client))
        self.assertEqual(reply.get_body()["code"], "no-route")

    def test_reply_for_unknown_task_is_counted(self):
        router = self.start_router()
        runner = self.register(router)
        runner.send_multipart(
            CCMessage.build("task.reply.zz", {"task_id": "zz", "status": "finished"}).frames
        )
        wait_for(lambda: router.stats_total().get("task.reply_unknown"), what="counted")

    def test_refuses_local_role(self):
        ini = ROUTER.replace("cc-role = remote", "cc-role = local")
        server = self.write_server("router", ini, lifetime="1", reply_timeout="1", ack_timeout="1")
        result = self.run_command(server.command())
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot be run in role local", result.stderr + server.output())
        self.servers.remove(server)

    def test_original_task_shape_sent_twice_runs_once_with_one_final_answer(self):
        """testmsg.py task: task.send.<uuid1>, task_id 55 (a number), the message sent twice."""
        router = self.start_router()
        runner = self.register(router, "hostname", runner_id="r1")
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        uid = str(uuid.uuid1())
        frames = CCMessage.build("task.send." + uid, task(55, "hostname", cmd="run")).frames
        client.send_multipart(frames)
        client.send_multipart(frames)
        first, second = (CCMessage(self.recv(client)) for _ in range(2))
        for reply in (first, second):
            self.assertEqual(reply.type, "task.reply." + uid)
            self.assertEqual(reply.get_body()["status"], "forwarded")
            self.assertEqual(reply.get_body()["task_id"], 55)
        self.assertTrue(second.get_body()["duplicate"])
        got = CCMessage(self.recv(runner))
        self.assertEqual((got.type, got.get_body()["task_id"]), ("task.send." + uid, 55))
        self.assert_silent(runner, 0.3)  # the duplicate was not forwarded
        for status in ("starting", "finished", "finished"):  # a runner's late repeat
            self.runner_says(runner, uid, status, task_id=55)
        statuses = [b["status"] for _, b in self.replies(client)]
        self.assertEqual(statuses, ["starting", "finished"])
        router.wait_stat("task.reply_after_final")
        self.assert_silent(client, 0.3)
        # a resend after the end gets the final answer again, and the task does not run again
        client.send_multipart(frames)
        self.assertEqual(self.replies(client)[0][1]["status"], "finished")
        self.assert_silent(runner, 0.3)

    def test_task_not_acknowledged_fails_after_task_ack_timeout(self):
        router = self.start_router(ack_timeout="1")
        runner = self.register(router)  # a runner that never answers: gone
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        started = time.monotonic()
        self.send_task(client, task("t10"))
        got = self.replies(client)
        self.assertEqual([b["status"] for _, b in got], ["forwarded", "failed"])
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(got[1][1]["task_id"], "t10")
        self.assertIn("did not acknowledge the task within 1 s", got[1][1]["feedback"]["msg"])
        self.runner_says(runner, "t10", "starting")  # too late: not a second answer
        router.wait_stat("task.reply_after_final")
        self.assert_silent(client, 0.3)
        router.wait_stat("task.failed.ack_timeout")

    def test_restarted_runner_fails_the_tasks_of_the_old_one(self):
        router = self.start_router()
        old = self.register(router, runner_id="r1")
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t11"))
        self.assertEqual(CCMessage(self.recv(old)).type, "task.send.t11")
        self.runner_says(old, "t11", "starting")
        self.register(router, runner=old, runner_id="r1")  # the periodic re-registration
        router.wait_stat("task.register", 2)
        self.register(router, runner_id="r2")  # the same host, another process
        got = self.replies(client)
        self.assertEqual([b["status"] for _, b in got], ["forwarded", "starting", "failed"])
        self.assertIn("the task runner on testhost restarted", got[-1][1]["feedback"]["msg"])

    def test_silent_host_and_expired_route_end_their_tasks(self):
        router = self.start_router(lifetime="3", reply_timeout="1")
        runner = self.register(router)
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t12"), qid=b"Q12")
        self.assertEqual(CCMessage(self.recv(runner)).type, "task.send.t12")
        self.runner_says(runner, "t12", "starting")
        got = self.replies(client)
        self.assertEqual([b["status"] for _, b in got], ["forwarded", "starting", "failed"])
        self.assertIn("no reply from host testhost for 1 s", got[-1][1]["feedback"]["msg"])
        self.register(router, runner=runner)
        self.send_task(client, task("t13"), qid=b"Q13")
        self.runner_says(runner, "t13", "starting")
        # keep it alive past reply-timeout until the host's registration expires
        deadline = time.monotonic() + 10
        while not router.stats_total().get("dropped_routes") and time.monotonic() < deadline:
            self.runner_says(runner, "t13", "running")
            time.sleep(0.2)
        got = self.replies(client)
        self.assertEqual(got[-1][1]["status"], "failed")
        self.assertIn("registration of host testhost expired", got[-1][1]["feedback"]["msg"])

    def test_reload_keeps_tasks_and_stop_answers_them(self):
        router = self.start_router()
        runner = self.register(router, runner_id="r1")
        router.wait_stat("task.register")
        client = self.dealer(router.endpoint)
        self.send_task(client, task("t14"))
        self.assertEqual(CCMessage(self.recv(client)).get_body()["status"], "forwarded")
        # a changed timeout is taken in place: the host and the task are still known
        with open(router.ini, encoding="utf8") as f:
            text = f.read()
        router.write_ini(text.replace("task-ack-timeout = 15", "task-ack-timeout = 30"))
        router.send_signal(signal.SIGHUP)
        router.wait_log("reloaded")
        self.runner_says(runner, "t14", "starting")
        self.assertEqual(CCMessage(self.recv(client)).get_body()["status"], "starting")
        self.assertEqual(router.stop(), 0)
        final = CCMessage(self.recv(client)).get_body()
        self.assertEqual(final["status"], "failed")
        self.assertIn("the taskrouter stopped", final["feedback"]["msg"])
