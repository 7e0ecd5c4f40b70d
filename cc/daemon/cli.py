"""The command line of daemons: ``cc-daemon NAME ...`` and each module's ``python -m``."""

import sys
from typing import List, Optional, Type

from skytools.config import ConfigError

from cc.daemon.base import CCDaemon
from cc.daemon.registry import DAEMONS, load_daemon_class
from cc.process import run_process

__all__ = ["main", "run_daemon"]


def run_daemon(cls: Type[CCDaemon], args: Optional[List[str]] = None) -> None:
    """Entry point shared by every daemon module's ``python -m`` and by ``cc-daemon``."""
    args = sys.argv[1:] if args is None else args
    module = cls.__module__
    if module == "__main__":  # python -m cc.daemon.NAME: the name it was run by
        module = getattr(sys.modules[module].__spec__, "name", module)
    run_process(lambda: cls(module.rsplit(".", 1)[-1], args), module)


def main(argv: Optional[List[str]] = None) -> None:
    """``cc-daemon MODULE config.ini SECTION [options]``: run any daemon."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        asked = args[:1] in (["-h"], ["--help"])
        out = sys.stdout if asked else sys.stderr
        print("usage: cc-daemon MODULE config.ini SECTION [options]", file=out)
        print("daemons: %s (or a module path)" % ", ".join(sorted(DAEMONS)), file=out)
        sys.exit(0 if asked else 2)
    try:
        cls = load_daemon_class(args[0])
    except ConfigError as ex:
        print("cc-daemon: %s" % ex, file=sys.stderr)
        sys.exit(1)
    run_daemon(cls, args[1:])
