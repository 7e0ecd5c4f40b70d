"""The scenarios of ``cc-bench``, one module each, and what they share.

Each module has ``main(argv)`` and a docstring saying what it measures and
against which reference; ``cc-bench NAME --help`` shows its options.
:mod:`~cctools.bench.scenarios.forward` holds the three forwarding scenarios
(``forward``, ``twohop``, ``echo``), the default; :data:`SCENARIOS` lists the others.
"""

import importlib.util
import os
import subprocess
import time
from types import ModuleType
from typing import Dict, Sequence

#: the directory holding the cc and cctools packages: the source tree, or site-packages
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

#: scenario name -> what it measures, in the order ``cc-bench all`` runs them
SCENARIOS = {
    "signed": "signed against unsigned messages through one end-service",
    "dbcalls": "database calls through cc against direct psycopg2",
    "logtail": "logtail through one proxy hop against cat",
    "infowriter": "infowriter against cp -p",
    "fleet": "simulated hosts through a proxy to the end-services, unsigned and signed",
    "agent": "the host agent at rest: memory, CPU and wake-ups against a bare interpreter",
}


def wait_logged(
    proc: subprocess.Popen, logfile: str, markers: Sequence[str], timeout: float = 30.0
) -> Dict[str, str]:
    """The word after each of ``markers`` (``"listening on "``) in a server's log, once there.

    Raises SystemExit naming the log when the server exits or takes longer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = {}
        try:
            with open(logfile, errors="replace") as f:
                for line in f:
                    found.update((m, line.split(m, 1)[1].split()[0]) for m in markers if m in line)
        except FileNotFoundError:
            pass
        if len(found) == len(markers):
            return found
        time.sleep(0.05)
    raise SystemExit("cc-bench: a server did not start, see %s" % logfile)


def source_tree_module(name: str) -> ModuleType:
    """Import ``test/<name>.py`` of the source tree (the throwaway PKI lives there).

    Those helpers are not installed with the package: a scenario that needs
    one runs from a source checkout (``make bench``) and says so otherwise.
    """
    path = os.path.join(REPO, "test", name + ".py")
    if not os.path.exists(path):
        raise SystemExit("cc-bench: this scenario needs the source tree (%s)" % path)
    spec = importlib.util.spec_from_file_location("cc_bench_" + name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
