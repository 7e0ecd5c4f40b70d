"""cc-bench: throughput and latency of cc-server against its baselines, side by side.

    cc-bench [options] [forward | twohop | echo]    forwarding, the default
    cc-bench signed | dbcalls | logtail | infowriter | fleet | agent [options]
    cc-bench all                                    every scenario with its defaults

Each scenario is a module of :mod:`cctools.bench.scenarios` (the three forwarding
ones share :mod:`~cctools.bench.scenarios.forward`); ``cc-bench NAME --help``
shows its options.  ``all`` gives the figures doc/performance.md quotes.
"""

import importlib
import sys
from typing import Optional, Sequence

from cctools.bench.scenarios import SCENARIOS, forward

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the scenario ``argv`` starts with; forwarding when it names none."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SCENARIOS:
        return importlib.import_module("cctools.bench.scenarios." + argv[0]).main(argv[1:])
    if argv and argv[0] == "all":
        return run_all(argv[1:])
    return forward.main(argv)


def run_all(argv: Sequence[str]) -> None:
    """Every scenario with its defaults, one after the other; one that cannot run says why."""
    if argv:
        raise SystemExit("cc-bench all takes no options; run a scenario alone to change them")
    for scenario in (*forward.SCENARIOS, *SCENARIOS):
        print("== cc-bench %s" % scenario, flush=True)
        try:
            main([scenario])
        except SystemExit as ex:
            if ex.code:
                print("cc-bench %s did not finish: %s" % (scenario, ex.code), flush=True)
        print(flush=True)
