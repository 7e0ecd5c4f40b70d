"""cc.ping: what goes on the wire is the message EchoRequestMessage makes, byte for byte."""

import asyncio
import json
import logging
import unittest

import zmq
from tornado.ioloop import IOLoop

from cc import message
from cc.msgtypes import EchoRequestMessage
from cc.ping import RemotePinger
from cc.stats import Stats
from cc.stream import CCStream

log = logging.getLogger("test_ping")


class TestPingBody(unittest.TestCase):
    def test_pings_are_what_echo_request_message_makes(self):
        """Over a real socket pair; also after the host is renamed (a reload)."""

        async def scenario():
            ctx = zmq.Context()
            remote = ctx.socket(zmq.ROUTER)
            port = remote.bind_to_random_port("tcp://127.0.0.1")
            sock = ctx.socket(zmq.DEALER)
            sock.connect("tcp://127.0.0.1:%d" % port)
            stream = CCStream(sock, IOLoop.current(), Stats())
            target = 'tcp://h\u00e9:1 "quoted"'
            pinger = RemotePinger(target, stream, Stats(), log)
            received = []
            original = message.HOSTNAME
            try:
                for hostname in (message.HOSTNAME, "renamed-host"):
                    message.set_hostname(hostname)
                    pinger.ping()
                    while not remote.poll(0):
                        await asyncio.sleep(0.01)
                    received.append(remote.recv_multipart()[1:])  # less the DEALER's identity
            finally:
                message.set_hostname(original)
                stream.close(0)
                remote.close(0)
                ctx.term()
            return target, received

        target, received = asyncio.run(asyncio.wait_for(scenario(), 30))
        hostnames = []
        for frames in received:
            body = json.loads(frames[2])
            hostnames.append(body["hostname"])
            original = message.HOSTNAME
            try:
                message.set_hostname(body["hostname"])
                expected = EchoRequestMessage(target=target, time=body["time"]).to_message().frames
            finally:
                message.set_hostname(original)
            self.assertEqual(frames, expected)
        self.assertEqual(hostnames[1], "renamed-host")


if __name__ == "__main__":
    unittest.main()
