"""cc-task without a topology: parameters, reply formatting, usage errors, timeouts."""

import os
import sys

from harness import CCTestCase

from cc.message import CCMessage
from cc.taskclient import format_reply, parse_params


class TestTaskClient(CCTestCase):
    def test_parse_params(self):
        params = parse_params(["task_host=h", "task_handler=cc.task.sample", "cmd=a=b"])
        self.assertEqual(params["cmd"], "a=b")
        with self.assertRaisesRegex(ValueError, "need key=val"):
            parse_params(["task_host=h", "oops"])
        with self.assertRaisesRegex(ValueError, "task_handler"):
            parse_params(["task_host=h"])

    def test_format_reply(self):
        def reply(status, **fields):
            return CCMessage.build("task.reply.t", dict(task_id="t", status=status, **fields))

        self.assertEqual(format_reply(reply("starting")), ["reply: starting"])
        self.assertEqual(
            format_reply(reply("failed", feedback={"rc": 1, "out": "a\nb"})),
            ["reply: failed (1)", ">> a", ">> b"],
        )
        self.assertEqual(
            format_reply(reply("feedback", feedback={"log_level": "INFO", "log_msg": "hi"})),
            [">> INFO hi"],
        )
        self.assertEqual(format_reply(reply("feedback", feedback={"i": 1})), ['>> {"i": 1}'])
        error = CCMessage.build("error", {"msg": "cannot route to x", "code": "no-route"})
        self.assertEqual(format_reply(error), ["error: cannot route to x (no-route)"])

    def test_usage_errors_and_timeout(self):
        ini = os.path.join(self.tmp, "client.ini")
        with open(ini, "w", encoding="utf8") as f:
            f.write("[taskclient]\ncc = tcp://127.0.0.1:9\ntimeout = 0.2\nretries = 2\n")
        cmd = [sys.executable, "-m", "cc.taskclient", ini]
        result = self.run_command(cmd + ["--send", "task_host=h"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("task_handler", result.stderr)
        result = self.run_command(cmd + ["--send", "task_host=h", "task_handler=cc.task.sample"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("attempt 2 of 2", result.stderr)
