"""The fleet at a glance: one row per host and cc, from the latest reports a cc-server holds.

Loop-free policy for ``metrics-http``'s ``/fleet`` and ``/fleet.json``.  The
rows come from the statswriter stores (``pub.stats`` / ``pub.state`` of each
job) and the taskrouters' registrations.  A cc-server and its daemons
(``<cc>.<section>``) make one row; two ccs on one machine are two rows.  A
row's status is ``stale`` when its last report of any kind is older than three
of its periods (the shortest it reports at: a job's stats period, its runner's
registration period), ``stopped`` when its cc said it stopped cleanly,
``degraded`` when a job of its jobmgr is not RUNNING (FATAL, backing off,
restarting), else ``ok``.  Drops and invalid messages are the counters the
catalog (:mod:`cc.counters`) declares as drops and refusals.  The HTML is
rendered here, with inline CSS only: no script, no request to any other host,
a meta refresh.
"""

import html
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from cc.counters import Kind, sum_by_kind
from cc.statsstore import StatsEntry, is_number

__all__ = ["fleet_rows", "render_fleet"]

#: a host is stale after this many of its periods without a report
STALE_PERIODS = 3
#: the period assumed for a host that reports none (the default state-period)
DEFAULT_PERIOD = 300.0
#: seconds between reloads of the page
REFRESH_SECONDS = 10
#: statuses in the order the rows are listed
STATUS_ORDER = ("stale", "degraded", "stopped", "ok")


def _sum_kind(counters: List[Dict[str, float]], kind: Kind) -> float:
    return sum(sum_by_kind(c)[kind.value] for c in counters)


def _age(now: float, then: float) -> Optional[float]:
    return round(now - then, 1) if then else None


def _write_errors(state: Dict[str, Any]) -> List[str]:
    """What a ``pub.state`` says cannot be written: a writer handler's ``write_error``,
    a logtail's ``writer_error`` (the writer refuses its fragments)."""
    found = []
    error = state.get("writer_error")
    if isinstance(error, dict):
        found.append("its writer refuses: %s" % error.get("msg"))
    for key, value in sorted(state.items()):
        if isinstance(value, dict) and isinstance(value.get("write_error"), dict):
            found.append("%s cannot write: %s" % (key, value["write_error"].get("msg")))
    return found


def _status(
    stale: bool, stopped: bool, jobs: List[Dict[str, Any]], write_errors: List[str]
) -> str:
    if stopped:  # said so itself: silence after it is expected
        return "stopped"
    if stale:
        return "stale"
    if write_errors or any(job["state"] != "RUNNING" for job in jobs):
        return "degraded"
    return "ok"


def _cc_row(
    host: str,
    cc: Optional[str],
    entries: List[StatsEntry],
    registration: Optional[Dict[str, Any]],
    now: float,
) -> Dict[str, Any]:
    state_times = [e.state_received for e in entries if e.state_received]
    stats_times = [e.stats_received for e in entries if e.stats_received]
    periods = [e.period for e in entries if e.stats_received and e.period > 0]
    ages = [now - t for t in state_times + stats_times]
    if registration is not None:
        ages.append(registration["age"])
        if registration.get("period"):
            periods.append(registration["period"])
    period = min(periods) if periods else DEFAULT_PERIOD
    last_report = min(ages) if ages else None
    server_states = [e.state for e in entries if e.state and "role" in e.state]
    states = server_states + [e.state for e in entries if e.state and e.state not in server_states]
    version = next((s["version"] for s in states if isinstance(s.get("version"), str)), None)
    if version is None and registration is not None:
        version = registration.get("version")
    stopped = any(state.get("stopped") is True for state in server_states)
    jobs = []
    for state in server_states:
        jobs_state = state.get("jobs")
        for name, info in sorted(jobs_state.items() if isinstance(jobs_state, dict) else ()):
            if isinstance(info, dict):
                job_state = "STOPPED" if stopped else info.get("state")
                jobs.append({"name": name, "state": job_state, "restarts": info.get("restarts")})
    lags = [
        e.state["lag_bytes"] for e in entries if e.state and is_number(e.state.get("lag_bytes"))
    ]
    counters = [e.counters for e in entries if e.stats_received]
    stale = last_report is None or last_report > STALE_PERIODS * period
    write_errors = [text for state in states for text in _write_errors(state)]
    return {
        "host": host,
        "cc": cc,
        "status": _status(stale, stopped, jobs, write_errors),
        "stale": stale,
        "last_report_age": None if last_report is None else round(last_report, 1),
        "period": period,
        "state_age": _age(now, max(state_times, default=0)),
        "stats_age": _age(now, max(stats_times, default=0)),
        "registration_age": None if registration is None else round(registration["age"], 1),
        "registration_conflict": None if registration is None else registration.get("conflict"),
        "version": version,
        "role": server_states[0].get("role") if server_states else None,
        "jobs": jobs,
        "logtail_lag": sum(lags) if lags else None,
        "drops": _sum_kind(counters, Kind.DROP),
        "invalid": _sum_kind(counters, Kind.REFUSAL),
        "reporting_jobs": sorted(e.job for e in entries),
        "write_errors": write_errors,
    }


def _cc_of(entry: StatsEntry, servers: List[str]) -> str:
    """The cc an entry belongs to: a server's job, or the job its own name starts with."""
    for server in sorted(servers, key=len, reverse=True):
        if entry.job == server or entry.job.startswith(server + "."):
            return server
    return entry.job.split(".", 1)[0]


def fleet_rows(
    entries: Iterable[StatsEntry],
    registrations: Dict[str, Dict[str, Any]],
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """One row per host and cc: stale first, then degraded, stopped, ok; then by name.

    ``registrations`` maps a host to its task runner's registration: ``age``
    in seconds and optionally ``version`` and ``period``; it goes with the
    host's first cc (a registration does not name its cc).
    """
    now = time.time() if now is None else now
    by_host: Dict[str, List[StatsEntry]] = {}
    for entry in entries:
        by_host.setdefault(entry.host, []).append(entry)
    groups: Dict[Tuple[str, Optional[str]], List[StatsEntry]] = {}
    for host, host_entries in by_host.items():
        servers = [e.job for e in host_entries if e.state and "role" in e.state]
        for entry in host_entries:
            groups.setdefault((host, _cc_of(entry, servers)), []).append(entry)
    for host in registrations:
        if host not in by_host:
            groups[(host, None)] = []
    rows = []
    for (host, cc), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        first = not rows or rows[-1]["host"] != host
        registration = registrations.get(host) if first else None
        rows.append(_cc_row(host, cc, group, registration, now))
    rows.sort(key=lambda row: (STATUS_ORDER.index(row["status"]), row["host"], row["cc"] or ""))
    return rows


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="%(refresh)d">
<title>cc fleet: %(server)s</title>
<style>
body { font: 14px sans-serif; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; }
tr.stale td { background: #fbd5d5; }
tr.stale td.status { color: #a00; font-weight: bold; }
tr.degraded td { background: #fdecc8; }
tr.degraded td.status { color: #850; font-weight: bold; }
tr.stopped td { color: #777; }
span.restarts { color: #a00; font-weight: bold; }
</style></head>
<body>
<h1>cc fleet</h1>
<p>%(summary)s, as seen by %(server)s at %(time)s; stale: no report for %(stale)d periods.
Refreshes every %(refresh)d s; <a href="fleet.json">JSON</a>.</p>
<table>
<tr><th>host</th><th>cc</th><th>status</th><th>last report</th><th>pub.state</th><th>pub.stats</th>
<th>task runner</th><th>version</th><th>role</th><th>jobs (state, restarts)</th>
<th>logtail lag</th><th>drops</th><th>invalid</th></tr>
%(rows)s
</table>
</body></html>
"""


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return ("%.1f s ago" if value < 10 else "%.0f s ago") % value


def _job_cell(job: Dict[str, Any]) -> str:
    text = "%s: %s" % (html.escape(str(job["name"])), html.escape(str(job["state"])))
    restarts = job.get("restarts")
    if restarts:
        return '%s, <span class="restarts">%s restarts</span>' % (text, html.escape(str(restarts)))
    return text + ", 0 restarts"


def _row_html(row: Dict[str, Any]) -> str:
    cells = [
        html.escape(row["host"]),
        html.escape(row["cc"] or "-"),
        "<br>".join(
            [row["status"].upper() if row["status"] != "ok" else "ok"]
            + ['<span class="restarts">%s</span>' % html.escape(e) for e in row["write_errors"]]
        ),
        _seconds(row["last_report_age"]),
        _seconds(row["state_age"]),
        _seconds(row["stats_age"]),
        _seconds(row["registration_age"])
        + ("<br>two runners: %s" % html.escape(row["registration_conflict"])
           if row["registration_conflict"] else ""),  # fmt: skip
        html.escape(str(row["version"] or "-")),
        html.escape(str(row["role"] or "-")),
        "<br>".join(_job_cell(job) for job in row["jobs"]) or "-",
        "-" if row["logtail_lag"] is None else "%d B" % row["logtail_lag"],
        "%g" % row["drops"],
        "%g" % row["invalid"],
    ]
    classes = ["", "", "status", "", "", "", "", "", "", "", "num", "num", "num"]
    tds = "".join(
        '<td class="%s">%s</td>' % (cls, cell) if cls else "<td>%s</td>" % cell
        for cls, cell in zip(classes, cells)
    )
    return '<tr class="%s" id="host-%s:%s">%s</tr>' % (
        row["status"],
        html.escape(row["host"]),
        html.escape(row["cc"] or ""),
        tds,
    )


def render_fleet(rows: List[Dict[str, Any]], server: str, now: Optional[float] = None) -> str:
    """The ``/fleet`` page."""
    now = time.time() if now is None else now
    stale = sum(1 for row in rows if row["status"] == "stale")
    degraded = sum(1 for row in rows if row["status"] == "degraded")
    return PAGE % {
        "refresh": REFRESH_SECONDS,
        "server": html.escape(server),
        "summary": "%d ccs on %d hosts, %d stale, %d degraded"
        % (len(rows), len({row["host"] for row in rows}), stale, degraded),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now)),
        "stale": STALE_PERIODS,
        "rows": "\n".join(_row_html(row) for row in rows),
    }
