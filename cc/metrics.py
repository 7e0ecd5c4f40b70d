"""``metrics-http``: a cc-server's counters for Prometheus, and a JSON status page.

A tornado HTTP server on the server's own IOLoop serves

* ``/metrics``: the server's counters, plus every (host, job) that its
  statswriter handlers know, in the Prometheus text exposition format;
* ``/status``: the server's state and counters and the statswriters' entries, as JSON;
* ``/fleet`` and ``/fleet.json``: one row per host it hears from (see :mod:`cc.fleet`).

Counters are exported as the families :mod:`cc.counters` declares
(``count.dropped.peer_full`` is ``cc_messages_dropped_total{reason="peer_full"}``),
each sample labelled with the ``host`` and ``job`` it came from; the known
series of :data:`cc.counters.ZERO_FILLED` are there at 0 from a job's first
report.  The time of the latest report, its arrival, the stats period, a
process's start time, a job's restarts and state and a logtail's lag are gauges.

The render runs on the server's loop at each scrape.  A reporting job's
counter lines (its zero-filled series included: about 40 lines a job) change
only when its next ``pub.stats`` comes, so :class:`MetricsRenderer` keeps them
as text until then, and a scrape joins the kept text of every job.
"""

import functools
import json
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Tuple

import tornado.web
from skytools.config import ConfigError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from cc import counters
from cc.fleet import fleet_rows, render_fleet
from cc.jobs.states import JobState
from cc.statsstore import StatsEntry, is_number

if TYPE_CHECKING:  # pragma: no cover
    from cc.server import CCServer

__all__ = ["MetricsServer", "MetricsRenderer", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: (metric, type, help) of the gauges made from reports
REPORT_GAUGES = (
    ("cc_report_time_seconds", "gauge", "When the latest pub.stats of a job was sent"),
    ("cc_report_received_seconds", "gauge", "When the latest report of a job arrived here"),
    ("cc_stats_period_seconds", "gauge", "How often a job sends pub.stats"),
    ("cc_start_time_seconds", "gauge", "When a job's process started (from pub.state)"),
    ("cc_job_restarts", "gauge", "Restarts of a daemon by jobmgr (from pub.state)"),
    ("cc_job_state", "gauge", "1 for the state a daemon of jobmgr is in (from pub.state)"),
    ("cc_logtail_lag_bytes", "gauge", "Bytes a logtail has not had acknowledged (pub.state)"),
)

Labels = Tuple[Tuple[str, str], ...]
#: family -> (the job's labels as text, further labels) -> value
Samples = Dict[str, Dict[Tuple[str, Labels], float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def job_labels(host: str, job: str) -> str:
    """The ``host`` and ``job`` labels as exposition text, made once per job."""
    return 'host="%s",job="%s"' % (_escape(host), _escape(job))


def add_counters(
    families: Samples, base: str, totals: Dict[str, float], zero_fill: bool = True
) -> None:
    """Add one job's counters as catalog families, with the zero-filled series first."""
    if zero_fill:
        for family, series in counters.ZERO_SERIES:
            families.setdefault(family, {}).setdefault((base, series), 0)
    lookup = counters.lookup
    for name, value in totals.items():
        found = lookup(name)
        if found is None:
            family, series = counters.UNDECLARED, (("counter", name),)
        elif found[0].family is None:  # a sum of other rows: exported once, as those
            continue
        else:
            family, series = found[0].family, found[1]  # type: ignore[assignment]
        samples = families.setdefault(family, {})
        key = (base, series)
        samples[key] = samples.get(key, 0) + value


#: one job's counter families as exposition lines: family -> its samples' lines, sorted
JobText = Dict[str, str]


#: stands for a job's labels in :data:`ZERO_TEXT` (none of that text holds a NUL)
JOB_MARK = "\0"


def _zero_text() -> Dict[str, str]:
    zeros: Samples = {}
    add_counters(zeros, JOB_MARK, {})
    return {name: "\n".join(_sample_lines(name, samples)) for name, samples in zeros.items()}


def job_text(base: str, totals: Dict[str, float]) -> JobText:
    """One job's counters (its zero-filled series too) as text, family by family.

    A zero-filled family the job has not counted in is the same text for every job but
    for its labels: it is made from :data:`ZERO_TEXT`."""
    families: Samples = {}
    add_counters(families, base, totals, zero_fill=False)
    text: JobText = {}
    for name, zeros in ZERO_TEXT.items():
        samples = families.get(name)
        if samples is None:
            text[name] = zeros.replace(JOB_MARK, base)
            continue
        for family, series in counters.ZERO_SERIES:  # counted in: its zeros among its counts
            if family == name:
                samples.setdefault((base, series), 0)
    for name, samples in families.items():
        text[name] = "\n".join(_sample_lines(name, samples))
    return text


class MetricsRenderer:
    """The exposition text of a server's ``/metrics``; each job's counter text is made once
    per report and kept until the next (see the module docstring).

    The cache holds the jobs of the latest render only; it is used on the loop only.
    """

    def __init__(self) -> None:
        #: (host, job) -> (the totals the text was made of, the text)
        self._jobs: Dict[Tuple[str, str], Tuple[Dict[str, float], JobText]] = {}

    def render(
        self, own: Tuple[str, str, Dict[str, float], float], entries: Iterable[StatsEntry]
    ) -> str:
        """The exposition text: ``own`` is (host, job, totals, started) of this server."""
        gauges: Samples = {name: {} for name, _, _ in REPORT_GAUGES}
        host, job, totals, started = own
        own_base = job_labels(host, job)
        gauges["cc_start_time_seconds"][(own_base, ())] = started
        reported: Dict[str, List[StatsEntry]] = {}
        for entry in entries:
            base = job_labels(entry.host, entry.job)
            if base != own_base:  # its own: the live counters are newer
                reported.setdefault(base, []).append(entry)
            gauges["cc_report_received_seconds"][(base, ())] = entry.received
            if entry.stats_time:
                gauges["cc_report_time_seconds"][(base, ())] = entry.stats_time
                gauges["cc_stats_period_seconds"][(base, ())] = entry.period
            _state_gauges(gauges, base, entry.state or {})

        texts: Dict[str, JobText] = {own_base: job_text(own_base, totals)}
        kept: Dict[Tuple[str, str], Tuple[Dict[str, float], JobText]] = {}
        for base, same in reported.items():
            if len(same) > 1:  # one job in two statswriters' stores: added up, not kept
                merged: Dict[str, float] = {}
                for entry in same:
                    for name, value in entry.totals.items():
                        merged[name] = merged.get(name, 0) + value
                texts[base] = job_text(base, merged)
                continue
            entry = same[0]
            key = (entry.host, entry.job)
            cached = self._jobs.get(key)
            if cached is None or cached[0] is not entry.totals:  # a report replaces the dict
                cached = (entry.totals, job_text(base, entry.totals))
            kept[key] = cached
            texts[base] = cached[1]
        self._jobs = kept

        lines: List[str] = []
        for name, mtype, text in REPORT_GAUGES:
            _family(lines, name, mtype, text, gauges[name])
        declared = counters.families()
        ordered = [texts[base] for base in sorted(texts)]
        for name in sorted({name for job_families in ordered for name in job_families}):
            help_text = declared[name][0] if name in declared else UNDECLARED_HELP
            lines.extend(_header(name, "counter", help_text))
            lines.extend(done[name] for done in ordered if name in done)
        return "\n".join(lines) + "\n"


def render_metrics(
    own: Tuple[str, str, Dict[str, float], float], entries: Iterable[StatsEntry]
) -> str:
    """The exposition text, made from scratch (see :class:`MetricsRenderer`)."""
    return MetricsRenderer().render(own, entries)


UNDECLARED_HELP = "Counters cc's catalog does not declare (a plug-in's, another version's)"


def _state_gauges(gauges: Samples, base: str, state: Dict) -> None:
    """The gauges a ``pub.state`` gives: start time, jobmgr's jobs, logtail's lag."""
    started_at = state.get("started")
    if is_number(started_at):
        gauges["cc_start_time_seconds"][(base, ())] = started_at
    if is_number(state.get("lag_bytes")):
        gauges["cc_logtail_lag_bytes"][(base, ())] = state["lag_bytes"]
    jobs = state.get("jobs")
    for daemon, info in (jobs.items() if isinstance(jobs, dict) else ()):
        if not isinstance(info, dict):
            continue
        daemon_label = (("daemon", str(daemon)),)
        if is_number(info.get("restarts")):
            gauges["cc_job_restarts"][(base, daemon_label)] = info["restarts"]
        current = "STOPPED" if state.get("stopped") is True else info.get("state")
        if current in JOB_STATES:
            for name in JOB_STATES:
                key = (base, daemon_label + (("state", name),))
                gauges["cc_job_state"][key] = int(current == name)


#: the states ``cc_job_state`` has a series for
JOB_STATES = tuple(state.name for state in JobState)


def _header(name: str, mtype: str, text: str) -> List[str]:
    help_text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, mtype)]


def _family(lines: List[str], name: str, mtype: str, text: str, samples: Dict) -> None:
    if samples:
        lines.extend(_header(name, mtype, text))
        lines.extend(_sample_lines(name, samples))


def _sample_lines(name: str, samples: Dict) -> List[str]:
    """The samples of one family, sorted by job, then labels."""
    return [
        "%s{%s%s} %s" % (name, base, _label_text(labels), repr(float(value)))
        for (base, labels), value in sorted(samples.items())
    ]


@functools.lru_cache(maxsize=4096)
def _label_text(labels: Labels) -> str:
    """The labels after a job's, as text: the same few come with every job."""
    return "".join(',%s="%s"' % (k, _escape(v)) for k, v in labels)


#: zero-filled family -> the text of its zero series, with :data:`JOB_MARK` for the job
ZERO_TEXT = _zero_text()


def _entries(server: "CCServer") -> List[StatsEntry]:
    """Every report the stores of the server's handlers (statswriters) keep."""
    return [entry for store in server.view.stats_stores() for entry in store]


def _fleet(server: "CCServer") -> List[Dict[str, Any]]:
    """The fleet page's rows: statswriter entries and taskrouter registrations."""
    return fleet_rows(_entries(server), server.view.registered_hosts())


class _MetricsPage(tornado.web.RequestHandler):
    def initialize(self, server: "CCServer", renderer: MetricsRenderer) -> None:
        self.cc = server
        self.renderer = renderer

    def get(self) -> None:
        server = self.cc
        own = (server.settings.hostname, server.job_name, server.stats.totals(), server.started)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(self.renderer.render(own, _entries(server)))


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
            # the catalog's kinds: drops, refusals, errors, ... since start
            "by_kind": counters.sum_by_kind(stats.totals()),
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
                (r"/metrics", _MetricsPage, dict(pages, renderer=MetricsRenderer())),
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
