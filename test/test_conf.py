"""Every example under conf/ (and debian/cc.ini) starts, answers, forwards, and stays up.

Each ``conf/*.ini`` is run as written except for what cannot be shared on a
test machine: bind addresses become free ports on 127.0.0.1, paths move into
the test's directory, and the stats period shrinks so that the test can watch
the server work.  A remote URL that names another example's port is pointed
at that example, started first, so the hops are real.  ``conf/demo/`` is
what cc-demo runs; test_demo runs it.
"""

import configparser
import glob
import os
import re
import unittest
from typing import Dict, List, Optional

from harness import REPO_DIR, CCTestCase, ServerProcess, wait_for

from cc.message import CCMessage
from cctools.demo import SERVERS as DEMO_SERVERS

CONF_DIR = os.path.join(REPO_DIR, "conf")
DEMO_DIR = os.path.join(CONF_DIR, "demo")
#: files in conf/ that are not server configs, and the test that checks each
TESTED_ELSEWHERE = {
    "conf/prometheus/cc-alerts.yml": os.path.join(REPO_DIR, "test", "test_alert_rules.py"),
    "conf/prometheus/prometheus.yml": os.path.join(REPO_DIR, "test", "test_alert_rules.py"),
    "conf/client.ini": os.path.join(REPO_DIR, "test", "test_walkthrough.py"),
}
#: the role examples, and the package's /etc/cc/cc.ini
EXAMPLES = sorted(
    p for p in glob.glob(os.path.join(CONF_DIR, "*.ini")) if "conf/" + os.path.basename(p)
    not in TESTED_ELSEWHERE
) + [os.path.join(REPO_DIR, "debian", "cc.ini")]
#: where a URL goes that names no example: nothing listens there
NOWHERE = "tcp://127.0.0.1:1"
URL_RE = re.compile(r"tcp://[\w.*-]+:(\d+|\*)")
PATH_RE = re.compile(r"(?<![\w:/])(?:~|/var|/run|/tmp)/[^\s,;]*")


def parse(path: str) -> configparser.ConfigParser:
    cf = configparser.ConfigParser(interpolation=None)
    cf.read(path, encoding="utf8")
    return cf


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def examples_by_port() -> Dict[str, str]:
    """Bound port -> example file."""
    return {port_of(parse(p).get("ccserver", "cc-socket")): p for p in EXAMPLES}


def remote_urls(cf: configparser.ConfigParser) -> List[str]:
    """URLs the example connects to (everything but its own cc-socket)."""
    urls = []
    for section in cf.sections():
        for key, value in cf.items(section):
            if not (section == "ccserver" and key == "cc-socket"):
                urls.extend(m.group(0) for m in URL_RE.finditer(value))
    return urls


def rewrite(text: str, tmp: str, endpoints: Dict[str, str]) -> str:
    """The example, runnable here: free port, files under ``tmp``, URLs to the started peers."""

    def url(m: "re.Match[str]") -> str:
        return endpoints.get(m.group(1), NOWHERE)

    def path(m: "re.Match[str]") -> str:
        return os.path.join(tmp, m.group(0).lstrip("~/").replace("/", "_"))

    lines = []
    for line in text.splitlines():
        if re.match(r"\s*cc-socket\s*=", line):
            line = "cc-socket = tcp://127.0.0.1:*"
        elif re.match(r"\s*metrics-http\s*=", line):
            line = "metrics-http = 127.0.0.1:0"
        elif re.match(r"\s*stats-period\s*=", line):
            continue
        elif not line.lstrip().startswith((";", "#")):
            line = PATH_RE.sub(path, URL_RE.sub(url, line))
        lines.append(line)
        if line.strip() == "[ccserver]":
            lines.append("stats-period = 0.2")
    return "\n".join(lines) + "\n"


class TestConfExamples(CCTestCase):
    """One test per ``conf/*.ini``, generated below."""

    def start_example(self, path: str, endpoints: Dict[str, str]) -> ServerProcess:
        name = os.path.basename(path)[: -len(".ini")]
        with open(path, encoding="utf8") as f:
            text = rewrite(f.read(), self.tmp, endpoints)
        server = self.write_server(name, text)
        # the example's own logfile/infofile paths, where the harness looks for them
        cf = parse(server.ini)
        server.logfile = cf.get("ccserver", "logfile", fallback=server.logfile).replace(
            "%(job_name)s", name
        )
        server.infofile = cf.get("ccserver", "infofile", fallback=server.infofile).replace(
            "%(job_name)s", name
        )
        return server.start()

    def check_example(self, path: str) -> None:
        cf = parse(path)
        # start the examples this one connects to, if they can run here
        by_port = examples_by_port()
        endpoints: Dict[str, str] = {}
        peers: Dict[str, ServerProcess] = {}
        for url in remote_urls(cf):
            peer_path = by_port.get(port_of(url))
            if peer_path and peer_path != path and port_of(url) not in endpoints:
                peer = self.start_example(peer_path, {})
                endpoints[port_of(url)] = peer.endpoint
                peers[port_of(url)] = peer
        server = self.start_example(path, endpoints)

        if cf.has_option("routes", "echo"):
            sock = self.dealer(server.endpoint)
            reply = self.query(sock, "echo.request", {"target": "conf"})
            self.assertEqual(reply.type, "echo.response", reply.get_body())
        forwarded = self.forwarded_type(cf, peers)
        if forwarded:
            msgtype, peer = forwarded
            sock = self.dealer(server.endpoint)
            sock.send_multipart(CCMessage.build(msgtype, {"log_level": "INFO"}).frames)
            key_re = r"^count\.\w+\.msg\.%s$" % re.escape(msgtype)
            wait_for(lambda: has_stat(peer, key_re), what="%s at %s" % (msgtype, peer.name))
        jobs = jobmgr_jobs(cf)
        for job in jobs:  # jobmgr's daemons run, and send keepalives
            wait_for(lambda: server.job_status(job).get("state") == "RUNNING",
                     what="%s running" % job)  # fmt: skip
        # still up, and rewriting its infofile every stats period
        first = wait_for(lambda: info_written(server), what="%s infofile" % server.name)
        wait_for(lambda: info_written(server) not in (None, first), what="a later infofile")
        self.assertIsNone(server.proc.poll(), "%s exited" % server.name)
        for job in jobs:
            self.assertEqual(server.job_status(job).get("starts"), "1", "%s restarted" % job)

    def forwarded_type(self, cf, peers) -> Optional[tuple]:
        """A message type this example proxies to a started peer, and that peer."""
        for pattern, value in cf.items("routes"):
            for section in (s.strip() for s in value.split(",")):
                if cf.get(section, "handler", fallback="") != "proxy":
                    continue
                peer = peers.get(port_of(cf.get(section, "remote-cc")))
                if peer is not None:
                    return ("log.info" if pattern == "*" else pattern), peer
        return None


def info_written(server: ServerProcess) -> Optional[str]:
    """The ``info-written`` line of the server's infofile."""
    try:
        with open(server.infofile, encoding="utf8") as f:
            m = re.search(r"^info-written: (.*)$", f.read(), re.M)
    except FileNotFoundError:
        return None
    return m.group(1) if m else None


def jobmgr_jobs(cf: configparser.ConfigParser) -> List[str]:
    """The daemons of the example's jobmgr sections."""
    jobs = []
    for section in cf.sections():
        if cf.get(section, "handler", fallback="") in ("jobmgr", "cc.handler.jobmgr"):
            jobs += [d.strip() for d in cf.get(section, "daemons").split(",") if d.strip()]
    return jobs


def has_stat(server: ServerProcess, key_re: str) -> bool:
    """Whether a non-zero ``[total]`` counter's name matches ``key_re``."""
    return any(re.match(key_re, k) and v > 0 for k, v in server.stats_total().items())


def _make_test(path: str):
    def test(self: TestConfExamples) -> None:
        self.check_example(path)

    test.__doc__ = "%s starts and stays up" % os.path.relpath(path, REPO_DIR)
    return test


def _test_name(path: str) -> str:
    return "test_" + re.sub(r"\W", "_", os.path.relpath(path, REPO_DIR)[: -len(".ini")])


for _path in EXAMPLES:
    setattr(TestConfExamples, _test_name(_path), _make_test(_path))


class TestConfRewrite(unittest.TestCase):
    def test_rewrite_keeps_nothing_of_the_machine(self):
        text = rewrite(
            "[ccserver]\ncc-socket = tcp://0.0.0.0:10001\nlogfile = /var/log/cc/x.log\n"
            "stats-period = 30\n[h:p]\nremote-cc = tcp://127.0.0.1:10002\n; /var/ok\n",
            "/T",
            {"10002": "tcp://127.0.0.1:5555"},
        )
        self.assertIn("cc-socket = tcp://127.0.0.1:*", text)
        self.assertIn("logfile = /T/var_log_cc_x.log", text)
        self.assertIn("remote-cc = tcp://127.0.0.1:5555", text)
        self.assertIn("stats-period = 0.2", text)
        self.assertNotIn("= 30", text)
        self.assertIn("; /var/ok", text)

    def test_every_file_in_conf_has_a_test(self):
        """conf/ as the directory has it: each file a test above starts, or a server of
        cc-demo (which test_demo runs); anything else there would ship untested."""
        untested = []
        for dirpath, _, names in os.walk(CONF_DIR):
            for name in names:
                path = os.path.join(dirpath, name)
                if dirpath == DEMO_DIR:
                    tested = name in DEMO_SERVERS
                elif os.path.relpath(path, REPO_DIR) in TESTED_ELSEWHERE:
                    tested = os.path.exists(TESTED_ELSEWHERE[os.path.relpath(path, REPO_DIR)])
                else:
                    tested = path.endswith(".ini") and hasattr(TestConfExamples, _test_name(path))
                if not tested:
                    untested.append(os.path.relpath(path, REPO_DIR))
        self.assertEqual(untested, [], "files in conf/ that no test starts")
        self.assertIn("ccserver-confdb.ini", os.listdir(CONF_DIR))  # the walk looked there
