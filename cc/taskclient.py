"""cc-task: send a task to a host through the taskrouter and print its replies as they come.

::

    cc-task client.ini --send task_host=db1 task_handler=cc.task.sample cmd=test
    cc-task client.ini --send 'task_host=db-*' task_handler=cc.task.sample cmd=test
    cc-task client.ini --send task_host=db1,db2 task_handler=cc.task.sample
    cc-task client.ini --hosts
    cc-task client.ini --list
    cc-task client.ini --show cc.task.sample

``client.ini`` has ``[taskclient]`` with ``cc`` (the taskrouter's cc) and
optionally ``timeout`` (seconds to wait for the first reply, 15) ``retries``
(sends before giving up, 3) and ``reply-timeout`` (seconds of silence after
the first reply, 120; taskexec sends ``running`` every 10 s).  Exit status:
0 on ``finished``, 1 on ``failed``, ``stopped`` or an error, 2 on timeout
or bad usage.

A ``task_host`` with ``*``, ``?`` or ``[`` or a comma-separated list goes to
every matching host: one line per host as each ends, then the summary; the
exit status is 0 only when every host finished.  ``max_fanout=N`` and
``host_timeout=SECONDS`` bound it.
"""

import argparse
import importlib
import json
import pkgutil
import sys
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import skytools

import cc.task
from cc.client import CCClient
from cc.message import GATE_OPTIONS, CCMessage
from cc.msgtypes import TASK_FINAL
from cc.options import REQUIRED, Option, check_section
from cc.security import CMS_DECLARED

__all__ = ["main", "send_task", "list_tasks", "show_task", "OPTIONS"]

#: the [taskclient] section of client.ini
OPTIONS = (
    Option("cc", "url", REQUIRED, "the cc whose taskrouter takes the tasks",
           example="tcp://127.0.0.1:22632"),
    Option("timeout", "seconds", 15, "seconds to wait for the first reply"),
    Option("retries", "int", 3, "sends before giving up"),
    Option("reply-timeout", "seconds", 120, "seconds of silence after the first reply"),
)  # fmt: skip


#: cc-send -c reads its cms-* options from [taskclient] too
CRYPTO_OPTIONS = CMS_DECLARED + GATE_OPTIONS


def read_config(path: str) -> skytools.Config:
    """``[taskclient]`` of ``path``, checked; unknown options warned on stderr."""
    cf = skytools.Config("taskclient", path)
    for text in check_section(cf, OPTIONS + CRYPTO_OPTIONS):
        print("cc-task: warning: %s" % text, file=sys.stderr)
    return cf


def list_tasks() -> List[Tuple[str, str]]:
    """(module, first docstring line) of every module in :mod:`cc.task`."""
    result = []
    for info in pkgutil.iter_modules(cc.task.__path__, "cc.task."):
        if info.name.rsplit(".", 1)[-1].startswith(("_", ".")):
            continue
        try:
            doc = importlib.import_module(info.name).__doc__ or ""
            first = doc.strip().splitlines()[0] if doc.strip() else ""
        except Exception:
            first = "<broken>"
        result.append((info.name, first))
    return sorted(result)


def show_task(name: str) -> Optional[str]:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return "%s\n%s\n%s" % (name, "-" * len(name), (module.__doc__ or "").strip())


def parse_params(items: List[str]) -> Dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError("need key=val, got %r" % item)
        params[key] = value
    for required in ("task_host", "task_handler"):
        if required not in params:
            raise ValueError("%s=... is required" % required)
    return params


def format_reply(msg: CCMessage) -> List[str]:
    """Lines to print for one reply."""
    body = msg.get_body()
    if msg.type == "error":
        return ["error: %s (%s)" % (body.get("msg"), body.get("code"))]
    status = body.get("status")
    feedback = body.get("feedback")
    if status != "feedback":
        extra = ""
        if isinstance(feedback, dict) and "rc" in feedback:
            extra = " (%s)" % feedback["rc"]
        lines = ["reply: %s%s" % (status, extra)]
        if isinstance(feedback, dict) and feedback.get("msg"):
            lines.append(">> %s" % feedback["msg"])
        if isinstance(feedback, dict) and feedback.get("out"):
            lines.extend(">> %s" % line for line in str(feedback["out"]).splitlines())
        return lines
    if isinstance(feedback, dict) and "log_msg" in feedback:
        return [">> %s %s" % (feedback.get("log_level"), feedback["log_msg"])]
    if isinstance(feedback, dict) and "out" in feedback and len(feedback) == 1:
        return [">> %s" % feedback["out"]]
    return [">> %s" % json.dumps(feedback)]


def send_task(
    client: CCClient,
    params: Dict[str, str],
    timeout: float = 15.0,
    retries: int = 3,
    reply_timeout: float = 120.0,
) -> int:
    """Send the task, print replies; the exit status (0 finished, 1 failed, 2 timeout)."""
    task_id = params.get("task_id") or uuid.uuid4().hex
    fields: Dict[str, Any] = dict(params, task_id=task_id)
    msgtype = "task.send." + task_id
    for attempt in range(1, retries + 1):
        got_reply = False
        replies = client.query_replies(
            msgtype, fields, timeout=timeout, reply_timeout=reply_timeout
        )
        for reply in replies:
            if is_fanout_ack(reply):
                return follow_fanout(reply, replies)
            for line in format_reply(reply):
                print(line, flush=True)
            if reply.type == "error":
                return 1
            status = reply.get_body().get("status")
            if status in TASK_FINAL:
                print("done" if status == "finished" else status, flush=True)
                return 0 if status == "finished" else 1
            got_reply = True
        if got_reply:
            print("timeout: no reply for %.0f s" % reply_timeout, file=sys.stderr)
            return 2
        print(
            "no reply in %.0f s (attempt %d of %d)" % (timeout, attempt, retries),
            file=sys.stderr,
        )
    return 2


# -- many hosts ------------------------------------------------------------------------


def fanout_fields(params: Dict[str, str]) -> Dict[str, Any]:
    """``params`` with a comma-separated ``task_host`` as a list, fan-out bounds as numbers."""
    fields: Dict[str, Any] = dict(params)
    if "," in params["task_host"]:
        fields["task_host"] = [name.strip() for name in params["task_host"].split(",")]
    if "max_fanout" in params:
        fields["max_fanout"] = int(params["max_fanout"])
    if "host_timeout" in params:
        fields["host_timeout"] = float(params["host_timeout"])
    return fields


def is_fanout_ack(reply: CCMessage) -> bool:
    """Whether a reply is the taskrouter's answer to a task for many hosts."""
    body = reply.get_body()
    return reply.type != "error" and isinstance(body.get("hosts"), list)


def follow_fanout(ack: CCMessage, replies: Iterator[CCMessage]) -> int:
    """Print a line per host as it ends and the summary; 0 only when every host finished."""
    body = ack.get_body()
    print("forwarded to %d hosts" % len(body["hosts"]), flush=True)
    for name in body.get("unknown") or []:
        print("%s: not registered" % name, flush=True)
    for reply in replies:
        body = reply.get_body()
        status = body.get("status")
        if reply.type == "error":
            print("error: %s (%s)" % (body.get("msg"), body.get("code")), flush=True)
            return 1
        if status == "summary":
            for line in format_summary(body):
                print(line, flush=True)
            counts = body.get("counts") or {}
            return 0 if set(counts) <= {"finished"} else 1
        if status in TASK_FINAL:
            print(host_line(body), flush=True)
    print("timeout: the summary did not come", file=sys.stderr)
    return 2


def host_line(body: Dict[str, Any]) -> str:
    """``host: status (rc) message`` of one host's final reply."""
    line = "%s: %s" % (body.get("host"), body.get("status"))
    feedback = body.get("feedback")
    if isinstance(feedback, dict):
        if "rc" in feedback:
            line += " (%s)" % feedback["rc"]
        if feedback.get("msg"):
            line += " %s" % feedback["msg"]
    return line


def format_summary(body: Dict[str, Any]) -> List[str]:
    counts = body.get("counts") or {}
    lines = [
        "summary: %d hosts, %s"
        % (body.get("hosts", 0), ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items())))
    ]
    not_ok = body.get("not_ok") or {}
    if not_ok:
        lines.append("not ok: %s" % ", ".join("%s (%s)" % item for item in sorted(not_ok.items())))
    return lines


def list_hosts(client: CCClient, timeout: float) -> List[Dict[str, Any]]:
    """The taskrouter's registered hosts (``task.hosts``)."""
    reply = client.query("task.hosts", {}, timeout=timeout)
    body = reply.get_body()
    if reply.type == "error":
        raise ValueError("%s (%s)" % (body.get("msg"), body.get("code")))
    return body.get("hosts") or []


def format_hosts(hosts: List[Dict[str, Any]]) -> List[str]:
    """A table: host, seconds since its registration, version, period, task modules."""
    rows = [("HOST", "AGE", "VERSION", "PERIOD", "MODULES")]
    for info in hosts:
        rows.append(
            (
                str(info.get("host")),
                "%.0f" % info.get("age", 0),
                str(info.get("version", "?")),
                "%g" % info["period"] if "period" in info else "?",
                ",".join(info.get("modules", [])) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]
        for row in rows
    ]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cc-task", description=(__doc__ or "cc-task").split("\n")[0]
    )
    parser.add_argument("config", metavar="config.ini", help="INI file with a [taskclient] section")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the task modules")
    group.add_argument("--show", nargs="+", metavar="MODULE", help="describe task modules")
    group.add_argument("--send", nargs="+", metavar="KEY=VAL", help="send a task")
    group.add_argument("--hosts", action="store_true", help="list the registered hosts")
    args = parser.parse_args(argv)
    if args.hosts:
        sys.exit(print_hosts(args.config))
    if args.list:
        for name, doc in list_tasks():
            print("%s - %s" % (name, doc))
        return
    if args.show:
        for name in args.show:
            print(show_task(name) or "%s - not found" % name)
        return
    if not args.send:
        print("cc-task: need --send, --hosts, --list or --show", file=sys.stderr)
        sys.exit(2)
    try:
        params = fanout_fields(parse_params(args.send))
        cf = read_config(args.config)
        url = cf.get("cc")
    except Exception as ex:
        print("cc-task: %s" % ex, file=sys.stderr)
        sys.exit(2)
    with CCClient(url) as client:
        code = send_task(
            client,
            params,
            cf.getfloat("timeout", 15),
            cf.getint("retries", 3),
            cf.getfloat("reply-timeout", 120),
        )
    sys.exit(code)


def print_hosts(config: str) -> int:
    """``--hosts``: print the table; the exit status."""
    try:
        cf = read_config(config)
        with CCClient(cf.get("cc")) as client:
            hosts = list_hosts(client, cf.getfloat("timeout", 15))
    except Exception as ex:
        print("cc-task: %s" % ex, file=sys.stderr)
        return 2
    for line in format_hosts(hosts):
        print(line)
    return 0


if __name__ == "__main__":
    main()
