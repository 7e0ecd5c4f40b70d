"""Configs written for the original cc start unchanged (only addresses and paths rewritten)."""

import time

from harness import CCTestCase

from cc.message import CCMessage

# the original's conf/ccproxy.ini, as shipped: module paths, active echo, commented extras
CCPROXY = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-role = remote
cc-stats = 2

# listening socket for this CC instance
cc-socket = tcp://0.0.0.0:10001

[routes]
pub.infofile = h:proxy-info
pub.logtail = h:proxy-log
log = h:proxy-log
task = h:proxy-task
db = h:proxy-db
echo = h:echo

[h:proxy-info]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10002

[h:proxy-log]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10003

[h:proxy-task]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10004

[h:proxy-db]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10005

[h:echo]
handler = cc.handler.echo
ping-remotes = tcp://127.0.0.1:10002, tcp://127.0.0.1:10003, tcp://127.0.0.1:10004

#[h:delay]
#handler = cc.handler.delay
#forward-to = h:proxy-info
#delay = 5

#[h:filter]
#handler = cc.handler.filter
#forward-to = h:proxy-info
#include = pub.info*
"""

# the original's test configs: legacy "plugin =" keys and sections without the h: prefix
LOG_RECV = """\
[ccserver]
logfile = TMP/%(job_name)s.log
pidfile = TMP/%(job_name)s.pid
cc-role = remote
cc-socket = PORT1

[routes]
log = locallog
echo = echo

[locallog]
plugin = locallogger

[echo]
plugin = echo
"""

LOG_SEND = """\
[ccserver]
logfile = TMP/%(job_name)s.log
pidfile = TMP/%(job_name)s.pid
cc-role = local
cc-socket = PORT2

[routes]
log = h:proxy
echo = h:proxy

[h:proxy]
handler = proxy
remote-cc = PORT1
ping = yes
"""


def log_frames(text):
    return CCMessage.build(
        "log.info",
        {
            "log_level": "INFO",
            "service_type": "testmsg",
            "job_name": "job",
            "log_msg": text,
            "log_time": time.time(),
            "log_pid": 1,
            "log_line": 1,
            "log_function": "main",
        },
    ).frames


class TestOriginalConfigs(CCTestCase):
    def start_original(self, name, text, **ports):
        text = (
            text.replace("~/log/", "{tmp}/").replace("~/pid/", "{tmp}/").replace("TMP/", "{tmp}/")
        )
        for placeholder, url in ports.items():
            text = text.replace(placeholder, url)
        text = text.replace("tcp://0.0.0.0:10001", "tcp://127.0.0.1:*")
        server = self.write_server(name, text)
        # job_name comes from the file name, as in the original
        server.logfile = "%s/%s.log" % (self.tmp, name)
        server.infofile = "%s/%s.info" % (self.tmp, name)
        # stats every 0.2 s instead of 30 s, through skytools' --set override
        return server.start("--set", "stats-period=0.2")

    def test_original_logging_scenario(self):
        recv = self.start_original("log-recv", LOG_RECV, PORT1="tcp://127.0.0.1:*")
        send = self.start_original(
            "log-send", LOG_SEND, PORT1=recv.endpoint, PORT2="tcp://127.0.0.1:*"
        )
        sock = self.dealer(send.endpoint)
        sock.send_multipart(log_frames("Foo"))
        recv.wait_log(r"INFO Foo")
        sock.send_multipart(CCMessage.build("pub.infofile", {"filename": "info.1"}).frames)
        send.wait_log(r"no route")
        self.assertNotIn("no pong", send.output())

    def test_original_proxy_hub(self):
        recv = self.start_original("log-recv", LOG_RECV, PORT1="tcp://127.0.0.1:*")
        hub_text = CCPROXY.replace("tcp://127.0.0.1:10003", recv.endpoint)
        hub = self.start_original("ccproxy", hub_text)
        self.assertRegex(
            hub.output(), r"listening on tcp://127\.0\.0\.1:\d+ \(role remote, 6 routes\)"
        )
        sock = self.dealer(hub.endpoint)
        sock.send_multipart(log_frames("via-hub"))
        recv.wait_log(r"INFO via-hub")
        # cc-stats = 2: per-type counters
        hub.wait_stat("count.ok.msg.log.info", 1)
        hub.wait_log(r"no pong from tcp://127\.0\.0\.1:10002 for")
