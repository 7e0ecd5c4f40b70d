"""Property tests of the parser and builders: any frame list parses or raises MessageError."""

import json
import unittest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc.message import CCMessage, MessageError, is_valid_type

TYPE_PART = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=1,
    max_size=12,
)
MSG_TYPE = st.lists(TYPE_PART, min_size=1, max_size=5).map(".".join)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = st.dictionaries(st.text(max_size=10), JSON_VALUE, max_size=6)
ROUTE_ID = st.binary(min_size=1, max_size=8).filter(lambda b: b != b"")
FRAME = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"log.info", b"echo.request", b"{}", b'{"req": "log.info"}', b"[]"]),
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestParserProperties(unittest.TestCase):
    @SETTINGS
    @given(st.lists(FRAME, max_size=10))
    def test_any_frames_parse_or_raise_message_error(self, frames):
        try:
            msg = CCMessage(frames)
        except MessageError:
            return
        self.assertTrue(is_valid_type(msg.type))
        self.assertEqual(msg.frames[msg.rpos], b"")
        self.assertNotIn(b"", msg.route)
        try:
            body = msg.get_body()
        except MessageError as ex:
            self.assertIn(ex.code, ("bad-body", "hijacked"))
        else:
            self.assertEqual(body["req"], msg.type)

    @SETTINGS
    @given(MSG_TYPE, FIELDS, st.lists(ROUTE_ID, max_size=5), st.one_of(st.none(), st.binary()))
    def test_build_parse_round_trip(self, msgtype, fields, route, blob):
        built = CCMessage.build(msgtype, fields, route=route, blob=blob)
        again = CCMessage(list(built.frames))
        body = again.get_body()
        self.assertEqual(again.type, msgtype)
        self.assertEqual(again.route, route)
        self.assertEqual(again.blob, blob)
        expected = dict(fields)
        expected["req"] = msgtype
        for key, value in expected.items():
            self.assertEqual(json.dumps(body[key]), json.dumps(value))
        reply = again.reply("reply", {"x": 1})
        self.assertEqual(reply.route, route)

    @SETTINGS
    @given(MSG_TYPE, st.binary(max_size=60))
    def test_any_body_bytes(self, msgtype, body):
        msg = CCMessage([b"", msgtype.encode(), body])
        try:
            parsed = msg.get_body()
        except MessageError as ex:
            self.assertIn(ex.code, ("bad-body", "hijacked"))
        else:
            self.assertIsInstance(parsed, dict)


if __name__ == "__main__":
    unittest.main()
