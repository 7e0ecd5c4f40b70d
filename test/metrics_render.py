"""Time and size of a /metrics render at 1000 hosts x 3 jobs (a cc, a logtail, an infosender).

``.venv/bin/python test/metrics_render.py [OTHER_TREE]``: renders of this tree with nothing
kept, with no report since the last scrape, and with half the jobs reported since (a 15 s
scrape, a 30 s stats-period); with ``OTHER_TREE`` (say ``git archive main | tar -x -C
/tmp/main``) that tree's ``render_metrics`` too, with and without its zero-filled series,
and whether the texts are the same.  Medians of 7, on the machine as it is.
"""

import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cc import metrics  # noqa: E402
from cc.statsstore import StatsStore  # noqa: E402


def store(hosts=1000):
    s = StatsStore(max_entries=100000)
    now = time.time()
    for h in range(hosts):
        host = "db%04d.example.net" % h
        cc = {"count": 1000 + h, "bytes": 300000, "count.ok": 990, "bytes.ok": 290000,
              "seconds": 1.5, "seconds.ok": 1.4, "count.dropped.peer_full": h % 3,
              "count.invalid": 1, "count.invalid.bad-signature": 1}  # fmt: skip
        for mtype in ("log.info", "pub.logtail", "pub.stats"):
            cc["count.ok.msg." + mtype] = 300
            cc["bytes.ok.msg." + mtype] = 90000
        jobs = [
            ("cc", "ccserver", cc),
            ("cc.d:logtail", "logtail", {"count": 400, "tailed_bytes": 1.6e6,
                                         "logtail.acked": 400, "logtail.resent": 1}),
            ("cc.d:infosend", "infosender", {"count": 20}),
        ]  # fmt: skip
        for job, stype, totals in jobs:
            body = {"hostname": host, "job_name": job, "service_type": stype, "counters": {}}
            s.update("pub.stats", dict(body, totals=totals, period=30, time=now))
            s.update("pub.state", dict(body, state={"started": now - 100, "lag_bytes": 10}))
    return list(s)


def measure(label, render, *args):
    times, text = [], ""
    for _ in range(7):
        started = time.perf_counter()
        text = render(*args)
        times.append(time.perf_counter() - started)
    print("%-44s %4.0f ms (min %4.0f), %5.2f MB, %6d lines" % (
        label, 1000 * statistics.median(times), 1000 * min(times),
        len(text.encode()) / 1e6, text.count("\n")))  # fmt: skip
    return text


def main():
    entries = store()
    own = ("central", "central", {"count": 5.0, "count.ok": 5.0}, time.time())
    texts = []
    if len(sys.argv) > 1:
        path = os.path.join(sys.argv[1], "cc", "metrics.py")
        spec = importlib.util.spec_from_file_location("other_metrics", path)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        zero = other.counters.ZERO_SERIES
        other.counters.ZERO_SERIES = ()
        measure(sys.argv[1] + ", no zero series", other.render_metrics, own, entries)
        other.counters.ZERO_SERIES = zero
        texts.append(measure(sys.argv[1], other.render_metrics, own, entries))
    texts.append(measure("this tree, nothing kept", metrics.render_metrics, own, entries))
    renderer = metrics.MetricsRenderer()
    renderer.render(own, entries)
    texts.append(measure("this tree, no report since", renderer.render, own, entries))
    half = [0]

    def half_reported():
        half[0] ^= 1
        for entry in entries[half[0] :: 2]:
            entry.totals = dict(entry.totals)  # what a report does
        return renderer.render(own, entries)

    texts.append(measure("this tree, half the jobs reported since", half_reported))
    print("same text: %s" % all(t == texts[0] for t in texts))


if __name__ == "__main__":
    main()
