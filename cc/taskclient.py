"""cc-task: send a task to a host through the taskrouter and print its replies as they come.

::

    cc-task client.ini --send task_host=db1 task_handler=cc.task.sample cmd=test
    cc-task client.ini --list
    cc-task client.ini --show cc.task.sample

``client.ini`` has ``[taskclient]`` with ``cc`` (the taskrouter's cc) and
optionally ``timeout`` (seconds to wait for the first reply, 15) ``retries``
(sends before giving up, 3) and ``reply-timeout`` (seconds of silence after
the first reply, 120; taskexec sends ``running`` every 10 s).  Exit status:
0 on ``finished``, 1 on ``failed``, ``stopped`` or an error, 2 on timeout
or bad usage.
"""

import argparse
import importlib
import json
import pkgutil
import sys
import uuid
from typing import Any, Dict, List, Optional, Tuple

import skytools

import cc.task
from cc.client import CCClient
from cc.message import CCMessage

__all__ = ["main", "send_task", "list_tasks", "show_task"]

FINAL = ("finished", "failed", "stopped")


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
            for line in format_reply(reply):
                print(line, flush=True)
            if reply.type == "error":
                return 1
            status = reply.get_body().get("status")
            if status in FINAL:
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


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="cc-task", description=__doc__.split("\n")[0])
    parser.add_argument("config", metavar="config.ini", help="INI file with a [taskclient] section")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the task modules")
    group.add_argument("--show", nargs="+", metavar="MODULE", help="describe task modules")
    group.add_argument("--send", nargs="+", metavar="KEY=VAL", help="send a task")
    args = parser.parse_args(argv)
    if args.list:
        for name, doc in list_tasks():
            print("%s - %s" % (name, doc))
        return
    if args.show:
        for name in args.show:
            print(show_task(name) or "%s - not found" % name)
        return
    if not args.send:
        print("Need --list, --show or --send", file=sys.stderr)
        sys.exit(1)
    try:
        params = parse_params(args.send)
        cf = skytools.Config("taskclient", args.config)
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


if __name__ == "__main__":
    main()
