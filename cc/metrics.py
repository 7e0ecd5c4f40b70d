"""``metrics-http``: a cc-server's counters for Prometheus, and a JSON status page.

A tornado HTTP server on the server's own IOLoop serves

* ``/metrics``: the server's counters, plus every (host, job) that its
  statswriter handlers know, in the Prometheus text exposition format;
* ``/status``: the server's state and counters and the statswriters' entries, as JSON;
* ``/fleet`` and ``/fleet.json``: one row per host it hears from (see :mod:`cc.fleet`).

A counter ``count.ok`` becomes ``cc_count_ok_total{host="...",job="..."}``
(type counter: every cc counter only grows); the time of the latest report,
its arrival, the stats period, a process's start time, a job's restarts and a
logtail's lag are gauges.
"""

import json
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Tuple

import tornado.web
from skytools.config import ConfigError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from cc.fleet import fleet_rows, render_fleet
from cc.statsstore import StatsEntry, is_number

if TYPE_CHECKING:  # pragma: no cover
    from cc.server import CCServer

__all__ = ["MetricsServer", "metric_name", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: (metric, type, help) of the gauges made from reports
REPORT_GAUGES = (
    ("cc_report_time_seconds", "gauge", "When the latest pub.stats of a job was sent"),
    ("cc_report_received_seconds", "gauge", "When the latest report of a job arrived here"),
    ("cc_stats_period_seconds", "gauge", "How often a job sends pub.stats"),
    ("cc_start_time_seconds", "gauge", "When a job's process started (from pub.state)"),
    ("cc_job_restarts", "gauge", "Restarts of a daemon by jobmgr (from pub.state)"),
    ("cc_logtail_lag_bytes", "gauge", "Bytes a logtail has not had acknowledged (pub.state)"),
)

Labels = Tuple[Tuple[str, str], ...]


def metric_name(counter: str) -> str:
    """A valid Prometheus counter name for a cc counter."""
    return "cc_%s_total" % re.sub(r"[^a-zA-Z0-9_]", "_", counter)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(
    own: Tuple[str, str, Dict[str, float], float], entries: Iterable[StatsEntry]
) -> str:
    """The exposition text: ``own`` is (host, job, totals, started) of this server."""
    families: Dict[str, Dict[Labels, float]] = {}
    gauges: Dict[str, Dict[Labels, float]] = {name: {} for name, _, _ in REPORT_GAUGES}

    def add(host: str, job: str, totals: Dict[str, float]) -> None:
        labels = (("host", host), ("job", job))
        for counter, value in totals.items():
            samples = families.setdefault(metric_name(counter), {})
            samples[labels] = samples.get(labels, 0) + value  # names that map alike are summed

    host, job, totals, started = own
    add(host, job, totals)
    gauges["cc_start_time_seconds"][(("host", host), ("job", job))] = started
    for entry in entries:
        labels = (("host", entry.host), ("job", entry.job))
        if (entry.host, entry.job) != (host, job):  # its own: the live counters above are newer
            add(entry.host, entry.job, entry.totals)
        gauges["cc_report_received_seconds"][labels] = entry.received
        if entry.stats_time:
            gauges["cc_report_time_seconds"][labels] = entry.stats_time
            gauges["cc_stats_period_seconds"][labels] = entry.period
        _state_gauges(gauges, labels, entry.state or {})

    lines: List[str] = []
    for name, mtype, text in REPORT_GAUGES:
        _family(lines, name, mtype, text, gauges[name])
    for name in sorted(families):
        _family(lines, name, "counter", "", families[name])
    return "\n".join(lines) + "\n"


def _state_gauges(gauges: Dict[str, Dict[Labels, float]], labels: Labels, state: Dict) -> None:
    """The gauges a ``pub.state`` gives: start time, jobmgr's restarts, logtail's lag."""
    started_at = state.get("started")
    if is_number(started_at):
        gauges["cc_start_time_seconds"][labels] = started_at
    if is_number(state.get("lag_bytes")):
        gauges["cc_logtail_lag_bytes"][labels] = state["lag_bytes"]
    jobs = state.get("jobs")
    for daemon, info in (jobs.items() if isinstance(jobs, dict) else ()):
        restarts = info.get("restarts") if isinstance(info, dict) else None
        if is_number(restarts):
            gauges["cc_job_restarts"][labels + (("daemon", str(daemon)),)] = restarts


def _family(lines: List[str], name: str, mtype: str, text: str, samples: Dict) -> None:
    if not samples:
        return
    if text:
        lines.append("# HELP %s %s" % (name, text))
    lines.append("# TYPE %s %s" % (name, mtype))
    for labels, value in sorted(samples.items()):
        label_text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
        lines.append("%s{%s} %s" % (name, label_text, repr(float(value))))


def _entries(server: "CCServer") -> List[StatsEntry]:
    """Every report the stores of the server's handlers (statswriters) keep."""
    return [entry for store in server.view.stats_stores() for entry in store]


def _fleet(server: "CCServer") -> List[Dict[str, Any]]:
    """The fleet page's rows: statswriter entries and taskrouter registrations."""
    return fleet_rows(_entries(server), server.view.registered_hosts())


class _MetricsPage(tornado.web.RequestHandler):
    def initialize(self, server: "CCServer") -> None:
        self.cc = server

    def get(self) -> None:
        server = self.cc
        own = (server.settings.hostname, server.job_name, server.stats.totals(), server.started)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(render_metrics(own, _entries(server)))


class _StatusPage(tornado.web.RequestHandler):
    def initialize(self, server: "CCServer") -> None:
        self.cc = server

    def get(self) -> None:
        stats = self.cc.stats
        status: Dict[str, Any] = {
            "hostname": self.cc.settings.hostname,
            "job_name": self.cc.job_name,
            "service_type": self.cc.service_name,
            "state": self.cc.state(),
            "totals": stats.totals(),
            "latest": stats.last_period,
            "hosts": {},
        }
        for entry in _entries(self.cc):
            jobs = status["hosts"].setdefault(entry.host, {})
            jobs[entry.job] = {
                "stats": entry.as_dict("stats") if entry.stats_time else None,
                "state": entry.as_dict("state") if entry.state is not None else None,
            }
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(status, indent=1, sort_keys=True, default=str))


class _FleetPage(tornado.web.RequestHandler):
    def initialize(self, server: "CCServer", as_json: bool) -> None:
        self.cc = server
        self.as_json = as_json

    def get(self) -> None:
        rows = _fleet(self.cc)
        if self.as_json:
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps({"hosts": rows}, indent=1, sort_keys=True))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.write(render_fleet(rows, "%s (%s)" % (self.cc.job_name, self.cc.settings.hostname)))


class MetricsServer:
    """The HTTP server of ``metrics-http = [address:]port`` (port 0 picks a free one)."""

    def __init__(self, server: "CCServer", listen: str) -> None:
        host, _, port = listen.rpartition(":")
        try:
            port_number = int(port)
        except ValueError:
            raise ConfigError("metrics-http = %s: use [address:]port" % listen) from None
        pages = {"server": server}
        app = tornado.web.Application(
            [
                (r"/", tornado.web.RedirectHandler, {"url": "/fleet"}),
                (r"/metrics", _MetricsPage, pages),
                (r"/status", _StatusPage, pages),
                (r"/fleet", _FleetPage, dict(pages, as_json=False)),
                (r"/fleet\.json", _FleetPage, dict(pages, as_json=True)),
            ]
        )
        sockets = bind_sockets(port_number, host.strip("[]") or None)
        self.http = HTTPServer(app)
        self.http.add_sockets(sockets)
        addr = sockets[0].getsockname()
        self.address = "%s:%d" % (("[%s]" % addr[0]) if ":" in addr[0] else addr[0], addr[1])

    def stop(self) -> None:
        self.http.stop()
