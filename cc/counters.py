"""The catalog of counters: every counter cc keeps, declared once as a row of data.

A counter is kept under its dotted name (``count.dropped.peer_full``): that
name is what the infofile's ``[total]``, ``pub.stats`` and ``/status`` show,
as before.  Its row here says what it is (its :class:`Kind`), what it means,
and the Prometheus family and labels ``/metrics`` exports it as: the variable
parts of a dotted name are labels (``<reason>`` in the name becomes the
``reason`` label), so one family (``cc_messages_dropped_total``) covers every
reason.  A row without a family is a sum of other rows (``count.invalid``)
kept for the infofile and not exported twice.

The catalog is a plain table: a new counter is a new row.  A test reads every
``stats.inc()`` in ``cc/`` and fails, naming them, on counters no row knows.
A counter no row knows (a plug-in's, another version's) is still exported, as
``cc_undeclared_total{counter="..."}``.
"""

import enum
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

__all__ = [
    "Kind",
    "Counter",
    "COUNTERS",
    "FAMILY_HELP",
    "KNOWN_VALUES",
    "ZERO_FILLED",
    "UNDECLARED",
    "ZERO_SERIES",
    "lookup",
    "counted_kind",
    "sum_by_kind",
    "families",
]


class Kind(enum.Enum):
    """What a counter counts, as the fleet page and the alerts read it."""

    OUTCOME = "outcome"  # work done: messages routed, files written
    DROP = "drop"  # a message lost on its way: full queues, no route, peer gone
    REFUSAL = "refusal"  # input refused as invalid (malformed, unsigned, unknown)
    CLEANUP = "clean-up"  # routine expiry of state nobody needs any more
    ERROR = "error"  # a failure of cc or its surroundings: crashes, failed writes


OUTCOME, DROP, REFUSAL, CLEANUP, ERROR = Kind


class Counter(NamedTuple):
    """One row: dotted name (``<label>`` parts vary), kind, family, fixed labels, help."""

    name: str
    kind: Kind
    family: Optional[str]
    help: str
    labels: Tuple[Tuple[str, str], ...] = ()


def C(name: str, kind: Kind, family: Optional[str], help: str, **labels: str) -> Counter:
    return Counter(name, kind, family, help, tuple(sorted(labels.items())))


#: label values known in advance: families in :data:`ZERO_FILLED` export each at 0 from the start
KNOWN_VALUES: Dict[str, Tuple[str, ...]] = {
    # cc.stream drops, by reason
    "reason": ("closed", "peer_full", "queue_full", "send_error", "unexpected", "unroutable"),
    # error codes of messages refused before any handler saw them (doc/protocol.md)
    "code": (
        "bad-body",
        "bad-cert",
        "bad-frames",
        "bad-signature",
        "bad-type",
        "blob-hash",
        "body-too-deep",
        "body-too-large",
        "expired",
        "forbidden",
        "hijacked",
        "oversize",
        "replay",
        "replay-cache-full",
        "revoked",
        "stale",
        "too-many-queries",
        "undecryptable",
        "unencrypted",
        "unread",
        "unsigned",
        "untrusted",
    ),
}

#: families whose every known series is exported at 0 for every job, so that
#: ``increase()`` sees the first one counted
ZERO_FILLED = ("cc_messages_dropped_total", "cc_messages_invalid_total")

#: a counter no row knows
UNDECLARED = "cc_undeclared_total"

#: HELP of the families several rows share (a family of one row has that row's help)
FAMILY_HELP: Dict[str, str] = {
    "cc_messages_routed_total": "Messages routed, by result (ok, crashed, stopping)",
    "cc_messages_routed_bytes_total": "Bytes of the messages routed, by result",
    "cc_messages_routed_seconds_total": "Seconds spent routing messages, by result",
    "cc_messages_by_type_total": "Messages routed, by result and type (cc-stats = 2)",
    "cc_messages_by_type_bytes_total": "Bytes of the messages routed, by result and type",
    "cc_messages_by_type_seconds_total": "Seconds spent routing, by result and type",
    "cc_messages_dropped_total": "Messages dropped on their way, by reason",
    "cc_messages_dropped_bytes_total": "Bytes of the messages dropped, by reason",
    "cc_messages_invalid_total": "Messages refused as invalid before any handler, by code",
    "cc_job_starts_total": "Starts of a daemon by jobmgr",
    "cc_job_exits_total": "Exits of a daemon supervised by jobmgr (other than when stopped)",
    "cc_jobmgr_messages_total": "job.* messages jobmgr handled, by result",
    "cc_task_messages_total": "task.* messages a taskrouter or task runner handled, by result",
    "cc_task_failures_total": "Tasks a taskrouter failed, by why",
    "cc_task_fanout_hosts_total": "Hosts of fan-outs a taskrouter handled, by result",
    "cc_tasks_total": "Tasks a task runner handled, by result",
    "cc_audit_lines_total": "Lines of an audit trail, by result",
    "cc_taskrouter_expired_total": "Routes and finished tasks a taskrouter forgot (routine)",
    "cc_logtail_fragments_total": "Log fragments a logtail handled, by result",
    "cc_logtail_files_total": "Files a logtail started tailing or found truncated",
    "cc_logtail_truncated_lost_bytes_total": (
        "Bytes written to a log and truncated away before a logtail read them (copytruncate)"
    ),
    "cc_infosender_files_total": "Infofiles an infosender handled, by result",
    "cc_infosender_bytes_total": "Bytes of infofiles an infosender read and sent",
    "cc_infoscript_runs_total": "Runs of an infoscript's command, by result",
    "cc_infoscript_bytes_total": "Bytes an infoscript read and sent",
    "cc_discovery_total": "Checks of a discovery daemon, by result",
    "cc_pg_logforward_records_total": "Log records pg_logforward handled, by result",
    "cc_logwatch_records_total": "Records the example logwatch plug-in handled, by result",
    "cc_logwriter_records_total": "Log records a logwriter handled, by result",
    "cc_infowriter_files_total": "Infofiles an infowriter handled, by result",
    "cc_statswriter_reports_total": "pub.stats and pub.state reports a statswriter handled",
    "cc_statswriter_files_total": "Files a statswriter wrote or failed to write",
    "cc_delay_messages_total": "Messages a delay handler handled, by result",
    "cc_delay_bytes_total": "Bytes of the messages a delay handler handled, by result",
    "cc_filter_messages_total": "Messages a filter handled, by result (dropped: filtered out)",
    "cc_filter_bytes_total": "Bytes of the messages a filter handled, by result",
    "cc_tailwriter_fragments_total": "Log fragments a tailwriter handled, by result",
    "cc_tailwriter_failures_total": "Log fragments a tailwriter refused or failed, by code",
    "cc_dbhandler_calls_total": "Database calls of a dbhandler, by result",
    "cc_dbhandler_errors_total": "Database calls of a dbhandler that failed, by code",
    "cc_ping_total": "Pings of a proxy link, by result",
    "cc_proxy_link_changes_total": "A proxy's moves between its remote-cc endpoints, by change",
    "cc_proxy_shard_choices_total": "Sharded messages sent elsewhere than their host's shard",
}

# fmt: off
#: every counter cc keeps; ``<x>`` matches one dotted part, ``<x*>`` the rest of the name
COUNTERS: List[Counter] = [
    # -- messages through a server (and a daemon's own socket) --------------------------------
    C("count", OUTCOME, "cc_messages_total", "Messages received, every result and the invalid"),
    C("bytes", OUTCOME, "cc_messages_bytes_total", "Bytes of the messages received"),
    C("seconds", OUTCOME, "cc_messages_seconds_total", "Seconds spent routing messages"),
    C("count.ok", OUTCOME, "cc_messages_routed_total", "Messages the handlers took", result="ok"),
    C("count.crashed", ERROR, "cc_messages_routed_total", "Messages a handler raised on",
      result="crashed"),
    C("count.stopping", REFUSAL, "cc_messages_routed_total",
      "Messages that came after their handlers stopped", result="stopping"),
    C("bytes.ok", OUTCOME, "cc_messages_routed_bytes_total", "Bytes taken", result="ok"),
    C("bytes.crashed", ERROR, "cc_messages_routed_bytes_total", "Bytes crashed on",
      result="crashed"),
    C("bytes.stopping", REFUSAL, "cc_messages_routed_bytes_total", "Bytes after stop",
      result="stopping"),
    C("seconds.ok", OUTCOME, "cc_messages_routed_seconds_total", "Seconds taken", result="ok"),
    C("seconds.crashed", ERROR, "cc_messages_routed_seconds_total", "Seconds crashed",
      result="crashed"),
    C("seconds.stopping", REFUSAL, "cc_messages_routed_seconds_total", "Seconds after stop",
      result="stopping"),
    C("seconds.dropped", DROP, "cc_messages_routed_seconds_total", "Seconds finding no route",
      result="no_route"),
    C("count.<result>.msg.<type*>", OUTCOME, "cc_messages_by_type_total", "Messages by type"),
    C("bytes.<result>.msg.<type*>", OUTCOME, "cc_messages_by_type_bytes_total", "Bytes by type"),
    C("seconds.<result>.msg.<type*>", OUTCOME, "cc_messages_by_type_seconds_total",
      "Seconds by type"),
    C("count.dropped", DROP, "cc_messages_dropped_total", "Messages no route matched",
      reason="no_route"),
    C("bytes.dropped", DROP, "cc_messages_dropped_bytes_total", "Bytes no route matched",
      reason="no_route"),
    C("count.dropped.<reason>", DROP, "cc_messages_dropped_total",
      "Messages a socket dropped: peer gone, queue or peer wait full, send failed"),
    C("bytes.dropped.<reason>", DROP, "cc_messages_dropped_bytes_total", "Bytes dropped"),
    C("count.waited.peer_full", OUTCOME, "cc_messages_waited_total",
      "Replies that waited for a client's full pipe"),
    C("count.invalid", REFUSAL, None, "Messages refused as invalid (sum of count.invalid.*)"),
    C("count.invalid.<code>", REFUSAL, "cc_messages_invalid_total", "Invalid messages"),
    C("bytes.invalid", REFUSAL, "cc_messages_invalid_bytes_total",
      "Bytes of the messages refused as invalid"),
    C("count.query_timeout", ERROR, "cc_query_timeouts_total",
      "Queries whose answer did not come in time"),
    C("count.reply_unknown", REFUSAL, "cc_replies_unknown_total",
      "Replies to no query waiting (late or forged)"),
    C("count.unexpected", REFUSAL, "cc_messages_unexpected_total",
      "Messages of a type a daemon does not handle"),
    C("count.reload_failed", ERROR, "cc_reload_failures_total",
      "Reloads refused for a bad configuration"),
    # -- jobmgr and its jobs --------------------------------------------------------------------
    C("jobs.<daemon>.starts", OUTCOME, "cc_job_starts_total", "Starts of a daemon"),
    C("jobs.<daemon>.exits", ERROR, "cc_job_exits_total", "Exits of a daemon"),
    C("jobs.<daemon>.hung", ERROR, "cc_job_hangs_total",
      "Daemons stopped for sending no keepalive"),
    C("jobs.<daemon>.killed", ERROR, "cc_job_kills_total",
      "Daemons killed for not stopping in time"),
    C("jobs.<daemon>.fatal", ERROR, "cc_job_fatal_total",
      "Times a daemon went FATAL: it exited start-retries times within start-seconds"),
    C("jobmgr.keepalive", OUTCOME, "cc_jobmgr_messages_total", "Keepalives",
      result="keepalive"),
    C("jobmgr.forbidden", REFUSAL, "cc_jobmgr_messages_total", "job.config without the job's"
      " token", result="forbidden"),
    C("jobmgr.config", OUTCOME, "cc_jobmgr_messages_total", "Config requests", result="config"),
    C("jobmgr.unknown", REFUSAL, "cc_jobmgr_messages_total", "job.* of an unknown type",
      result="unknown"),
    C("jobmgr.keepalive_unknown", REFUSAL, "cc_jobmgr_messages_total",
      "Keepalives of an unknown job or process", result="keepalive_unknown"),
    # -- tasks ------------------------------------------------------------------------------------
    C("task.register", OUTCOME, "cc_task_messages_total", "Registrations", result="register"),
    C("task.send", OUTCOME, "cc_task_messages_total", "Tasks sent to a host", result="send"),
    C("task.reply", OUTCOME, "cc_task_messages_total", "Replies passed on", result="reply"),
    C("task.hosts", OUTCOME, "cc_task_messages_total", "Host list requests", result="hosts"),
    C("task.fanout", OUTCOME, "cc_task_messages_total", "Fan-outs", result="fanout"),
    C("task.unknown", REFUSAL, "cc_task_messages_total", "task.* of an unknown type",
      result="unknown"),
    C("task.invalid", REFUSAL, "cc_task_messages_total", "Malformed task messages",
      result="invalid"),
    C("task.duplicate", REFUSAL, "cc_task_messages_total", "Tasks with an id in use",
      result="duplicate"),
    C("task.no_route", REFUSAL, "cc_task_messages_total", "Tasks for an unregistered host",
      result="no_route"),
    C("task.reply_unknown", REFUSAL, "cc_task_messages_total", "Replies of no known task",
      result="reply_unknown"),
    C("task.reply_after_final", REFUSAL, "cc_task_messages_total",
      "Replies after the final one", result="reply_after_final"),
    C("task.fanout_refused", REFUSAL, "cc_task_messages_total", "Fan-outs refused",
      result="fanout_refused"),
    C("task.fanout_late", REFUSAL, "cc_task_messages_total", "Fan-out replies after its end",
      result="fanout_late"),
    C("task.dropped_register", DROP, "cc_messages_dropped_total",
      "Registrations beyond the taskrouter's bound", reason="task_register_full"),
    C("task.dropped_send", DROP, "cc_messages_dropped_total",
      "Tasks a taskrouter could not pass to the host's link", reason="task_send_failed"),
    C("task.failed.<why>", ERROR, "cc_task_failures_total", "Tasks failed"),
    C("task.forbidden", REFUSAL, "cc_task_messages_total", "task.* from a signer acting for"
      " another host", result="forbidden"),
    C("task.register_conflict", REFUSAL, "cc_task_messages_total", "Registrations of a host"
      " another live runner holds", result="register_conflict"),
    C("task.unregister", OUTCOME, "cc_task_messages_total", "Runners that stopped cleanly",
      result="unregister"),
    C("task.unregister_stale", CLEANUP, "cc_task_messages_total", "Unregistrations of a route"
      " already replaced", result="unregister_stale"),
    C("task.stop", OUTCOME, "cc_task_messages_total", "task.stop requests", result="stop"),
    C("task.stop_sent", OUTCOME, "cc_task_messages_total", "task.stop sent to hosts",
      result="stop_sent"),
    C("task.stop_unknown", REFUSAL, "cc_task_messages_total", "task.stop of no known task",
      result="stop_unknown"),
    C("task.fanout_hosts", OUTCOME, "cc_task_fanout_hosts_total", "Hosts of fan-outs",
      result="asked"),
    C("task.fanout_timeout", ERROR, "cc_task_fanout_hosts_total", "Fan-out hosts silent",
      result="timeout"),
    C("dropped_routes", CLEANUP, "cc_taskrouter_expired_total", "Registrations expired",
      what="route"),
    C("dropped_tasks", CLEANUP, "cc_taskrouter_expired_total", "Finished tasks forgotten",
      what="task"),
    C("tasks_launched", OUTCOME, "cc_tasks_total", "Tasks launched", result="launched"),
    C("tasks_finished", OUTCOME, "cc_tasks_total", "Tasks finished", result="finished"),
    C("tasks_failed", ERROR, "cc_tasks_total", "Tasks failed", result="failed"),
    C("tasks.invalid", REFUSAL, "cc_tasks_total", "Malformed tasks", result="invalid"),
    C("tasks.duplicate", REFUSAL, "cc_tasks_total", "Tasks sent twice", result="duplicate"),
    C("tasks.forbidden", REFUSAL, "cc_tasks_total", "Tasks or stops the task-policy refused",
      result="forbidden"),
    C("tasks.overdue", ERROR, "cc_tasks_total", "Tasks stopped after max-run-time",
      result="overdue"),
    C("tasks.stop_unknown", REFUSAL, "cc_tasks_total", "task.stop of no running task",
      result="stop_unknown"),
    C("audit.lines", OUTCOME, "cc_audit_lines_total", "Audit trail lines written",
      result="written"),
    C("audit.failed", ERROR, "cc_audit_lines_total", "Audit trail lines that could not be"
      " written", result="failed"),
    # -- daemons ----------------------------------------------------------------------------------
    C("tailed_files", OUTCOME, "cc_logtail_files_total", "Files tailed", result="tailed"),
    C("logtail.truncated", OUTCOME, "cc_logtail_files_total", "Files found truncated",
      result="truncated"),
    C("logtail.truncated_lost_bytes", ERROR, "cc_logtail_truncated_lost_bytes_total",
      "Bytes lost to a truncation in place"),
    C("tailed_bytes", OUTCOME, "cc_logtail_bytes_total", "Bytes a logtail sent"),
    C("logtail.acked", OUTCOME, "cc_logtail_fragments_total", "Acknowledged", result="acked"),
    C("logtail.resent", ERROR, "cc_logtail_fragments_total", "Sent again", result="resent"),
    C("logtail.errors", ERROR, "cc_logtail_fragments_total", "Answered with an error",
      result="error"),
    C("changes", OUTCOME, "cc_infosender_files_total", "Changed files sent", result="sent"),
    C("infosender.acked", OUTCOME, "cc_infosender_files_total", "Acknowledged",
      result="acked"),
    C("infosender.deferred", OUTCOME, "cc_infosender_files_total", "Deferred (changing)",
      result="deferred"),
    C("infosender.torn", ERROR, "cc_infosender_files_total", "Read while being written",
      result="torn"),
    C("infosender.too_large", REFUSAL, "cc_infosender_files_total", "Too large to send",
      result="too_large"),
    C("infosender.unacked", ERROR, "cc_infosender_files_total", "Not acknowledged in time",
      result="unacked"),
    C("infosender.errors", ERROR, "cc_infosender_files_total", "Answered with an error",
      result="error"),
    C("infosender.bytes.read", OUTCOME, "cc_infosender_bytes_total", "Read", what="read"),
    C("infosender.bytes.sent", OUTCOME, "cc_infosender_bytes_total", "Sent", what="sent"),
    C("infoscript.count", OUTCOME, "cc_infoscript_runs_total", "Outputs sent", result="sent"),
    C("infoscript.fails", ERROR, "cc_infoscript_runs_total", "Runs failed", result="failed"),
    C("infoscript.bytes.read", OUTCOME, "cc_infoscript_bytes_total", "Read", what="read"),
    C("infoscript.bytes.sent", OUTCOME, "cc_infoscript_bytes_total", "Sent", what="sent"),
    C("discovery.checks", OUTCOME, "cc_discovery_total", "Checks", result="checked"),
    C("discovery.published", OUTCOME, "cc_discovery_total", "Changes published",
      result="published"),
    C("discovery.probe_failed", ERROR, "cc_discovery_total", "Probes failed",
      result="probe_failed"),
    C("pg_logforward.count", OUTCOME, "cc_pg_logforward_records_total", "Records",
      result="received"),
    C("pg_logforward.invalid", REFUSAL, "cc_pg_logforward_records_total", "Records refused",
      result="invalid"),
    C("pg_logforward.plugin_failed", ERROR, "cc_pg_logforward_records_total",
      "Records a plug-in raised on", result="plugin_failed"),
    C("pg_logforward.bytes", OUTCOME, "cc_pg_logforward_bytes_total", "Bytes of records"),
    C("pg_logforward.seconds", OUTCOME, "cc_pg_logforward_seconds_total",
      "Seconds spent on records"),
    C("plugins.failed", ERROR, "cc_plugin_failures_total", "Plug-in calls that raised"),
    C("logwatch.sent", OUTCOME, "cc_logwatch_records_total", "Sent", result="sent"),
    C("logwatch.skipped", OUTCOME, "cc_logwatch_records_total", "Skipped", result="skipped"),
    # -- handlers ---------------------------------------------------------------------------------
    C("proxy.failover", ERROR, "cc_proxy_link_changes_total", "Moved off an endpoint that"
      " stopped answering pings", change="failover"),
    C("proxy.failback", OUTCOME, "cc_proxy_link_changes_total", "Moved back to the first"
      " endpoint", change="failback"),
    C("proxy.resent", OUTCOME, "cc_proxy_resent_total", "Acknowledged writes sent again on"
      " another link (or a shard back up)"),
    C("proxy.resend.forgotten", ERROR, "cc_proxy_resend_forgotten_total", "Writes no longer"
      " kept for a resend (queue-bytes): a failover may lose them until their sender resends"),
    C("proxy.reregister_asked", OUTCOME, "cc_proxy_reregister_asked_total", "task.reregister"
      " sent to runners after a move"),
    C("proxy.shard.no_hostname", ERROR, "cc_proxy_shard_choices_total", "Without a hostname:"
      " sent to the shard of the empty name", result="no_hostname"),
    C("proxy.shard.secondary", OUTCOME, "cc_proxy_shard_choices_total", "Sent to the host's"
      " secondary, its shard being down", result="secondary"),
    C("disposed_count", OUTCOME, "cc_disposed_messages_total", "Messages a disposer discarded"),
    C("disposed_bytes", OUTCOME, "cc_disposed_bytes_total", "Bytes a disposer discarded"),
    C("logwriter.lines", OUTCOME, "cc_logwriter_records_total", "Written", result="written"),
    C("logwriter.forbidden", REFUSAL, "cc_logwriter_records_total", "Of a signer acting for"
      " another host", result="forbidden"),
    C("logwriter.rejected", REFUSAL, "cc_logwriter_records_total", "Suspicious paths",
      result="rejected"),
    C("logwriter.invalid", REFUSAL, "cc_logwriter_records_total", "Unnameable",
      result="invalid"),
    C("logwriter.failed", ERROR, "cc_logwriter_records_total", "Writes failed",
      result="failed"),
    C("logwriter.dropped", DROP, "cc_messages_dropped_total", "Log records beyond the queue",
      reason="logwriter_queue_full"),
    C("logwriter.bytes", OUTCOME, "cc_logwriter_bytes_total", "Bytes a logwriter wrote"),
    C("written_files", OUTCOME, "cc_infowriter_files_total", "Written", result="written"),
    C("written_bytes", OUTCOME, "cc_infowriter_bytes_total", "Bytes an infowriter wrote"),
    C("infowriter.skipped", OUTCOME, "cc_infowriter_files_total", "Unchanged, skipped",
      result="skipped"),
    C("infowriter.forbidden", REFUSAL, "cc_infowriter_files_total", "Of a signer acting for"
      " another host", result="forbidden"),
    C("infowriter.rejected", REFUSAL, "cc_infowriter_files_total", "Suspicious paths",
      result="rejected"),
    C("infowriter.invalid", REFUSAL, "cc_infowriter_files_total", "Invalid",
      result="invalid"),
    C("infowriter.too_large", REFUSAL, "cc_infowriter_files_total", "Too large",
      result="too_large"),
    C("infowriter.failed", ERROR, "cc_infowriter_files_total", "Writes failed",
      result="failed"),
    C("infowriter.dropped", DROP, "cc_messages_dropped_total", "Infofiles beyond the queue",
      reason="infowriter_queue_full"),
    C("statswriter.stats", OUTCOME, "cc_statswriter_reports_total", "pub.stats kept",
      result="stats"),
    C("statswriter.state", OUTCOME, "cc_statswriter_reports_total", "pub.state kept",
      result="state"),
    C("statswriter.forbidden", REFUSAL, "cc_statswriter_reports_total", "Reports of a signer"
      " acting for another host", result="forbidden"),
    C("statswriter.invalid", REFUSAL, "cc_statswriter_reports_total", "Reports refused",
      result="invalid"),
    C("statswriter.dropped_full", DROP, "cc_messages_dropped_total",
      "Reports of new (host, job) pairs beyond max-entries", reason="statswriter_full"),
    C("statswriter.written_files", OUTCOME, "cc_statswriter_files_total", "Written",
      result="written"),
    C("statswriter.write_failed", ERROR, "cc_statswriter_files_total", "Writes failed",
      result="failed"),
    C("delay.count", OUTCOME, "cc_delay_messages_total", "Taken", result="received"),
    C("delay.bytes", OUTCOME, "cc_delay_bytes_total", "Taken", result="received"),
    C("delay.count.ok", OUTCOME, "cc_delay_messages_total", "Passed on", result="ok"),
    C("delay.count.crashed", ERROR, "cc_delay_messages_total", "Crashed", result="crashed"),
    C("delay.count.stopping", REFUSAL, "cc_delay_messages_total", "Its target had stopped",
      result="stopping"),
    C("delay.count.dropped", DROP, "cc_messages_dropped_total", "Messages beyond its queue",
      reason="delay_queue_full"),
    C("delay.bytes.<result>", OUTCOME, "cc_delay_bytes_total", "Bytes by result"),
    C("filter.count", OUTCOME, "cc_filter_messages_total", "Taken", result="received"),
    C("filter.bytes", OUTCOME, "cc_filter_bytes_total", "Taken", result="received"),
    C("filter.count.ok", OUTCOME, "cc_filter_messages_total", "Passed", result="ok"),
    C("filter.count.dropped", OUTCOME, "cc_filter_messages_total", "Filtered out",
      result="dropped"),
    C("filter.count.crashed", ERROR, "cc_filter_messages_total", "Crashed", result="crashed"),
    C("filter.count.stopping", REFUSAL, "cc_filter_messages_total", "Its target had stopped",
      result="stopping"),
    C("filter.bytes.<result>", OUTCOME, "cc_filter_bytes_total", "Bytes by result"),
    C("tailwriter.count", OUTCOME, "cc_tailwriter_fragments_total", "Received",
      result="received"),
    C("tailwriter.fragments", OUTCOME, "cc_tailwriter_fragments_total", "Appended",
      result="appended"),
    C("appended_bytes", OUTCOME, "cc_tailwriter_bytes_total", "Bytes a tailwriter appended"),
    C("tailwriter.failed.<code>", ERROR, "cc_tailwriter_failures_total", "Refused or failed"),
    C("<handler>.calls", OUTCOME, "cc_dbhandler_calls_total", "Calls", result="called"),
    C("<handler>.ok", OUTCOME, "cc_dbhandler_calls_total", "Calls answered", result="ok"),
    C("<handler>.errors", ERROR, "cc_dbhandler_calls_total", "Calls failed", result="error"),
    C("<handler>.errors.<code>", ERROR, "cc_dbhandler_errors_total", "Calls failed"),
    C("<handler>.dropped", DROP, "cc_messages_dropped_total",
      "Calls beyond the handler's queue", reason="dbhandler_overloaded"),
    C("<handler>.db_time", OUTCOME, "cc_dbhandler_seconds_total", "Seconds in the database"),
    C("ping.sent", OUTCOME, "cc_ping_total", "Sent", result="sent"),
    C("ping.received", OUTCOME, "cc_ping_total", "Answered", result="received"),
    C("ping.link_down", ERROR, "cc_ping_total", "Links found down", result="link_down"),
]
# fmt: on

Match = Tuple[Counter, Tuple[Tuple[str, str], ...]]

_EXACT: Dict[str, Counter] = {row.name: row for row in COUNTERS if "<" not in row.name}


def _compile(name: str) -> "re.Pattern[str]":
    parts = []
    for part in re.split(r"(<[a-z]+\*?>)", name):
        if part.startswith("<"):
            label = part.strip("<>*")
            parts.append("(?P<%s>%s)" % (label, ".+" if part.endswith("*>") else "[^.]+"))
        else:
            parts.append(re.escape(part))
    return re.compile("".join(parts))


#: patterns, literal parts first: ``count.dropped.<reason>`` before ``<handler>.dropped``
_PATTERNS = sorted(
    ((_compile(row.name), row) for row in COUNTERS if "<" in row.name),
    key=lambda item: item[1].name.startswith("<"),
)
_CACHE: Dict[str, Optional[Match]] = {}
#: names remembered; names come from the network, so the cache is bounded
CACHE_SIZE = 20000


def lookup(name: str) -> Optional[Match]:
    """The row of dotted counter ``name`` and its labels, or None when no row knows it."""
    try:
        return _CACHE[name]
    except KeyError:
        pass
    found: Optional[Match] = None
    row = _EXACT.get(name)
    if row is not None:
        found = (row, row.labels)
    else:
        for pattern, row in _PATTERNS:
            match = pattern.fullmatch(name)
            if match:
                found = (row, tuple(sorted(row.labels + tuple(match.groupdict().items()))))
                break
    if len(_CACHE) < CACHE_SIZE:
        _CACHE[name] = found
    return found


def counted_kind(name: str) -> Optional[Kind]:
    """The kind of counter ``name`` if it counts things (not bytes or seconds, not a sum)."""
    found = lookup(name)
    if found is None or found[0].family is None:
        return None
    if found[0].family.endswith(("_bytes_total", "_seconds_total")):
        return None
    return found[0].kind


def sum_by_kind(values: Dict[str, float]) -> Dict[str, float]:
    """Counters that count things (see :func:`counted_kind`) added up by kind, every kind there."""
    sums = {kind.value: 0.0 for kind in Kind}
    for name, n in values.items():
        kind = counted_kind(name)
        if kind is not None:
            sums[kind.value] += n
    return sums


def families() -> Dict[str, Tuple[str, List[Counter]]]:
    """Every exported family: its HELP and its rows."""
    result: Dict[str, Tuple[str, List[Counter]]] = {}
    for row in COUNTERS:
        if row.family is not None:
            rows = result.setdefault(row.family, (FAMILY_HELP.get(row.family, row.help), []))[1]
            rows.append(row)
    return result


def _zero_series() -> Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...]:
    series = []
    for row in COUNTERS:
        family = row.family
        if family is None or family not in ZERO_FILLED:
            continue
        variable = re.findall(r"<([a-z]+)\*?>", row.name)
        if not variable:
            series.append((family, row.labels))
        elif len(variable) == 1 and variable[0] in KNOWN_VALUES:
            for value in KNOWN_VALUES[variable[0]]:
                series.append((family, tuple(sorted(row.labels + ((variable[0], value),)))))
    return tuple(series)


#: (family, labels) of every series of :data:`ZERO_FILLED` known in advance
ZERO_SERIES = _zero_series()
