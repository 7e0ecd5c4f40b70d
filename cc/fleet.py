"""The fleet at a glance: one row per host, from the latest reports a cc-server holds.

Loop-free policy for ``metrics-http``'s ``/fleet`` and ``/fleet.json``.  The
rows come from the statswriter stores (``pub.stats`` / ``pub.state`` of each
job) and the taskrouters' registrations.  A host is stale when its last
report of any kind is older than three of its periods (the shortest period it
reports at: a job's stats period, its runner's registration period).  The
HTML is rendered here, with inline CSS only: no script, no request to any
other host, a meta refresh.
"""

import html
import time
from typing import Any, Dict, Iterable, List, Optional

from cc.statsstore import StatsEntry, is_number

__all__ = ["fleet_rows", "render_fleet"]

#: a host is stale after this many of its periods without a report
STALE_PERIODS = 3
#: the period assumed for a host that reports none (the default state-period)
DEFAULT_PERIOD = 300.0
#: seconds between reloads of the page
REFRESH_SECONDS = 10


def _is_kind(key: str, word: str) -> bool:
    """Whether counter ``key`` counts ``word`` (``count.dropped``, ``task.dropped_send``)."""
    if key.startswith(("bytes.", "seconds.")):
        return False
    last = key.rsplit(".", 1)[-1]
    return last == word or last.startswith(word + "_") or last.endswith("_" + word)


def _age(now: float, then: float) -> Optional[float]:
    return round(now - then, 1) if then else None


def _host_row(
    host: str,
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
    jobs = []
    for state in server_states:
        jobs_state = state.get("jobs")
        for name, info in sorted(jobs_state.items() if isinstance(jobs_state, dict) else ()):
            if isinstance(info, dict):
                jobs.append(
                    {"name": name, "state": info.get("state"), "restarts": info.get("restarts")}
                )
    lags = [
        e.state["lag_bytes"] for e in entries if e.state and is_number(e.state.get("lag_bytes"))
    ]
    counters = [e.counters for e in entries if e.stats_received]
    return {
        "host": host,
        "stale": last_report is None or last_report > STALE_PERIODS * period,
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
        "drops": sum(n for c in counters for k, n in c.items() if _is_kind(k, "dropped")),
        "invalid": sum(n for c in counters for k, n in c.items() if _is_kind(k, "invalid")),
        "reporting_jobs": sorted(e.job for e in entries),
    }


def fleet_rows(
    entries: Iterable[StatsEntry],
    registrations: Dict[str, Dict[str, Any]],
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """One row per host (stale hosts first, then by name).

    ``registrations`` maps a host to its task runner's registration: ``age``
    in seconds and optionally ``version`` and ``period``.
    """
    now = time.time() if now is None else now
    by_host: Dict[str, List[StatsEntry]] = {}
    for entry in entries:
        by_host.setdefault(entry.host, []).append(entry)
    hosts = set(by_host) | set(registrations)
    rows = [_host_row(h, by_host.get(h, []), registrations.get(h), now) for h in hosts]
    rows.sort(key=lambda row: (not row["stale"], row["host"]))
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
span.restarts { color: #a00; font-weight: bold; }
</style></head>
<body>
<h1>cc fleet</h1>
<p>%(summary)s, as seen by %(server)s at %(time)s; stale: no report for %(stale)d periods.
Refreshes every %(refresh)d s; <a href="fleet.json">JSON</a>.</p>
<table>
<tr><th>host</th><th>status</th><th>last report</th><th>pub.state</th><th>pub.stats</th>
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
        "STALE" if row["stale"] else "ok",
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
    classes = ["", "status", "", "", "", "", "", "", "", "num", "num", "num"]
    tds = "".join(
        '<td class="%s">%s</td>' % (cls, cell) if cls else "<td>%s</td>" % cell
        for cls, cell in zip(classes, cells)
    )
    return '<tr class="%s" id="host-%s">%s</tr>' % (
        "stale" if row["stale"] else "ok",
        html.escape(row["host"]),
        tds,
    )


def render_fleet(rows: List[Dict[str, Any]], server: str, now: Optional[float] = None) -> str:
    """The ``/fleet`` page."""
    now = time.time() if now is None else now
    stale = sum(1 for row in rows if row["stale"])
    return PAGE % {
        "refresh": REFRESH_SECONDS,
        "server": html.escape(server),
        "summary": "%d hosts, %d stale" % (len(rows), stale),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now)),
        "stale": STALE_PERIODS,
        "rows": "\n".join(_row_html(row) for row in rows),
    }
