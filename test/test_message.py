"""CCMessage: frame layout, validation, lazy body parsing, builders."""

import json
import unittest

from cc.message import (
    FORWARDED_UNREAD,
    MAX_ROUTE_DEPTH,
    MAX_TYPE_LENGTH,
    BodyGate,
    BodyLimits,
    CCMessage,
    MessageError,
    is_valid_type,
)
from cc.msgtypes import EchoRequestMessage, ErrorMessage, TaskSendMessage, wants_reply


def frames(msgtype=b"log.info", body=None, route=(b"peer",), extra=()):
    if body is None:
        body = json.dumps({"req": msgtype.decode()}).encode()
    return list(route) + [b"", msgtype, body] + list(extra)


class TestParse(unittest.TestCase):
    def test_route_type_body_signature_blob(self):
        msg = CCMessage(frames(route=(b"a", b"b"), extra=(b"sig", b"blob")))
        self.assertEqual(msg.route, [b"a", b"b"])
        self.assertEqual(msg.type, "log.info")
        self.assertEqual(msg.get_body(), {"req": "log.info"})
        self.assertEqual(msg.signature, b"sig")
        self.assertEqual(msg.blob, b"blob")

    def test_optional_frames(self):
        msg = CCMessage(frames())
        self.assertEqual(msg.signature, b"")
        self.assertIsNone(msg.blob)
        self.assertEqual(CCMessage(frames(extra=(b"", b""))).blob, b"")

    def test_route_ends_at_first_empty_frame(self):
        msg = CCMessage([b"x", b"", b"echo.request", b"{}", b"", b""])
        self.assertEqual(msg.route, [b"x"])
        self.assertEqual(msg.type, "echo.request")

    def test_size_counts_every_frame(self):
        f = frames(extra=(b"sig",))
        self.assertEqual(CCMessage(f).size, sum(len(x) for x in f))

    def assert_rejected(self, frame_list, code):
        with self.assertRaises(MessageError) as ctx:
            CCMessage(frame_list).get_body()
        self.assertEqual(ctx.exception.code, code)

    def test_no_delimiter(self):
        self.assert_rejected([b"peer", b"log.info", b"{}"], "bad-frames")

    def test_missing_type_or_body(self):
        self.assert_rejected([b"peer", b""], "bad-frames")
        self.assert_rejected([b"peer", b"", b"log.info"], "bad-frames")

    def test_too_many_frames(self):
        self.assert_rejected(frames(extra=(b"", b"", b"x")), "bad-frames")

    def test_route_too_deep(self):
        self.assert_rejected(frames(route=[b"r"] * (MAX_ROUTE_DEPTH + 1)), "bad-frames")
        CCMessage(frames(route=[b"r"] * MAX_ROUTE_DEPTH))

    def test_bad_types(self):
        for bad in (b"", b".log", b"log.", b"log..info", b"log info", b"log/x", b"\xff", b"a*"):
            self.assert_rejected(frames(msgtype=bad, body=b"{}"), "bad-type")
        long_type = b"a" * (MAX_TYPE_LENGTH + 1)
        self.assert_rejected(frames(msgtype=long_type, body=b"{}"), "bad-type")
        ok_type = b"a" * MAX_TYPE_LENGTH
        self.assertEqual(CCMessage(frames(msgtype=ok_type)).type, ok_type.decode())

    def test_valid_types(self):
        for good in ("log", "log.info", "task.send.5f3e-aa_1", "A-b_c.D9"):
            self.assertTrue(is_valid_type(good), good)
        self.assertFalse(is_valid_type("pub.*"))

    def test_body_not_json(self):
        self.assert_rejected(frames(body=b"{nope"), "bad-body")
        self.assert_rejected(frames(body=b"\xff\xfe"), "bad-body")

    def test_body_not_object(self):
        for body in (b"[]", b"1", b'"log.info"', b"null"):
            self.assert_rejected(frames(body=body), "bad-body")

    def test_req_must_equal_type(self):
        self.assert_rejected(frames(body=b'{"req": "log.error"}'), "hijacked")
        self.assert_rejected(frames(body=b'{"x": 1}'), "hijacked")

    def test_body_parsed_once(self):
        msg = CCMessage(frames())
        self.assertIs(msg.get_body(), msg.get_body())

    def test_lists_and_unicode_in_body(self):
        body = {"req": "db", "params": [1, [2, 3], "ä"], "x": None}
        msg = CCMessage(frames(msgtype=b"db", body=json.dumps(body).encode()))
        self.assertEqual(msg.get_body(), body)


class TestGate(unittest.TestCase):
    def raw(self, body):
        return CCMessage([b"Q1", b"", b"echo.request", body, b""])

    def test_refused_body_cannot_be_had(self):
        msg = self.raw(b'{"req": "echo.request", "x": [[[1]]]}')
        with self.assertRaises(MessageError) as cm:
            BodyGate(limits=BodyLimits(max_depth=3)).open(msg)
        self.assertEqual(cm.exception.code, "body-too-deep")
        for _ in range(2):  # the verdict stays: every later reader gets the refusal
            with self.assertRaises(MessageError) as cm:
                msg.get_body()
            self.assertEqual(cm.exception.code, "body-too-deep")
        with self.assertRaises(MessageError):
            BodyGate().open(msg)  # a second gate does not reopen what one refused
        self.assertFalse(msg.checked)

    def test_accepted_body_is_kept(self):
        msg = self.raw(b'{"req": "echo.request", "x": 1}')
        body = BodyGate().open(msg)
        self.assertIs(msg.get_body(), body)
        self.assertTrue(msg.checked)
        self.assertIsNone(msg.signer)

    def test_forwarded_unread_cannot_be_read(self):
        msg = self.raw(b'{"req": "echo.request"}')
        msg.verdict = FORWARDED_UNREAD
        with self.assertRaises(MessageError) as cm:
            msg.get_body()
        self.assertEqual(cm.exception.code, "unread")

    def test_size_bound(self):
        gate = BodyGate(limits=BodyLimits(max_size=30))
        gate.open(self.raw(b'{"req": "echo.request"}'))
        with self.assertRaises(MessageError) as cm:
            gate.open(self.raw(b'{"req": "echo.request", "pad": "xxxxxxx"}'))
        self.assertEqual(cm.exception.code, "body-too-large")

    def test_depth_counts_containers_not_brackets_in_strings(self):
        gate = BodyGate(limits=BodyLimits(max_depth=2))
        body = gate.open(self.raw(b'{"req": "echo.request", "s": "[[[[{{{{", "l": [1, 2]}'))
        self.assertEqual(body["s"], "[[[[{{{{")
        with self.assertRaises(MessageError) as cm:
            gate.open(self.raw(b'{"req": "echo.request", "l": [[], [[]]]}'))
        self.assertEqual(cm.exception.code, "body-too-deep")

    def test_bracket_bomb(self):
        with self.assertRaises(MessageError) as cm:
            BodyGate().open(self.raw(b"[" * 100000 + b"]" * 100000))
        self.assertEqual(cm.exception.code, "body-too-deep")


class TestBuild(unittest.TestCase):
    def test_build_round_trip(self):
        msg = CCMessage.build("pub.infofile", {"filename": "x"}, route=[b"r"], blob=b"\0data")
        again = CCMessage(list(msg.frames))
        body = again.get_body()
        self.assertEqual(body["req"], "pub.infofile")
        self.assertEqual(body["filename"], "x")
        self.assertIn("time", body)
        self.assertIn("hostname", body)
        self.assertEqual(again.route, [b"r"])
        self.assertEqual(again.blob, b"\0data")

    def test_req_cannot_be_overridden_by_fields(self):
        msg = CCMessage.build("log.info", {"req": "db"})
        self.assertEqual(msg.get_body()["req"], "log.info")

    def test_reply_keeps_route(self):
        req = CCMessage(frames(msgtype=b"echo.request", route=(b"p1", b"p2", b"Q1")))
        reply = req.reply("echo.response", {"x": 1})
        self.assertEqual(reply.route, [b"p1", b"p2", b"Q1"])
        self.assertEqual(reply.type, "echo.response")

    def test_error_reply(self):
        req = CCMessage(frames(msgtype=b"db", route=(b"Q1",)))
        body = req.error_reply("no", "not-allowed").get_body()
        self.assertEqual((body["req"], body["msg"], body["code"]), ("error", "no", "not-allowed"))

    def test_with_route_leaves_original(self):
        msg = CCMessage(frames(route=(b"a",)))
        other = msg.with_route([b"b", b"c"])
        self.assertEqual(msg.route, [b"a"])
        self.assertEqual(other.route, [b"b", b"c"])
        self.assertEqual(other.get_body(), msg.get_body())

    def test_build_rejects_bad_type(self):
        with self.assertRaises(MessageError):
            CCMessage.build("bad type")


class TestCatalog(unittest.TestCase):
    def test_required_fields(self):
        with self.assertRaises(MessageError):
            EchoRequestMessage()
        with self.assertRaises(MessageError):
            ErrorMessage(msg="x")
        msg = EchoRequestMessage(target="tcp://x").to_message()
        self.assertEqual(msg.type, "echo.request")
        self.assertEqual(msg.get_body()["target"], "tcp://x")

    def test_type_suffix(self):
        msg = TaskSendMessage(
            "task.send.abc", task_host="h", task_handler="m", task_id="abc"
        ).to_message()
        self.assertEqual(msg.type, "task.send.abc")

    def test_wants_reply(self):
        self.assertTrue(wants_reply("echo.request", [b"p"]))
        self.assertTrue(wants_reply("db.confdb", [b"p"]))
        self.assertFalse(wants_reply("log.info", [b"p"]))
        self.assertFalse(wants_reply("error", [b"p"]))
        self.assertFalse(wants_reply("echo.request", []))
        self.assertFalse(wants_reply(None, [b"p"]))
        self.assertTrue(wants_reply(None, [b"p", b"Q1"]))


if __name__ == "__main__":
    unittest.main()
