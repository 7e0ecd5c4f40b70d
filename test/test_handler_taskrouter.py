"""taskrouter: registration, routing to the host, relaying replies, errors, expiry."""

from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

ROUTER = ccserver_section("router") + """
[routes]
task = h:taskrouter

[h:taskrouter]
handler = taskrouter
route-lifetime = {lifetime}
reply-timeout = 60
maint-period = 0.1
"""


def task(task_id, host="testhost", **extra):
    fields = {"task_host": host, "task_handler": "cc.task.sample", "task_id": task_id}
    fields.update(extra)
    return fields


class TestTaskRouter(CCTestCase):
    def start_router(self, lifetime="3600"):
        return self.start_server("router", ROUTER, lifetime=lifetime)

    def register(self, router, host="testhost"):
        runner = self.dealer(router.endpoint)
        runner.send_multipart(CCMessage.build("task.register", {"host": host}).frames)
        return runner

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
            ("task.send.x5", task("t5")),  # id and type disagree
            ("task.send.t6", task("t6/../x")),
            ("task.send", task("t7")),
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
        server = self.write_server("router", ini, lifetime="1")
        result = self.run_command(server.command())
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot be run in role local", result.stderr + server.output())
        self.servers.remove(server)
