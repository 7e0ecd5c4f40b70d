"""The C load: ``benchload.c`` compiled on first use against the libzmq that pyzmq loads.

A Python sender tops out below libzmq's own proxy on a small machine and would
make the bar look lower than it is; the forwarding scenarios (``--load``) and
``fleet`` use this one when a C compiler is there.
"""

import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
from typing import Optional

import zmq

__all__ = ["build_c_load"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchload.c")


def build_c_load(tmpdir: str) -> Optional[str]:
    """Compile ``benchload.c`` into ``tmpdir``; its path, or None (no compiler or libzmq)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    zmq_dir = os.path.dirname(os.path.abspath(zmq.__file__))
    bundled = glob.glob(os.path.join(os.path.dirname(zmq_dir), "pyzmq.libs", "libzmq*.so*"))
    if bundled:  # a wheel: link the very library pyzmq loads (RPATH: its libsodium is there too)
        link = [bundled[0], "-Wl,--disable-new-dtags,-rpath," + os.path.dirname(bundled[0])]
    else:
        name = ctypes.util.find_library("zmq")  # the system's, which a distro's pyzmq uses
        link = ["-l:" + name] if name else []
    if not compiler or not link:
        return None
    binary = os.path.join(tmpdir, "benchload")
    built = subprocess.run(
        [compiler, "-O2", "-o", binary, SOURCE, *link], capture_output=True, text=True
    )
    if built.returncode == 0:
        built = subprocess.run([binary], capture_output=True, text=True)  # usage: exit 2
        if built.returncode == 2 and "usage" in built.stderr:
            return binary
    print("cc-bench: cannot build the C load (%s)" % built.stderr.strip(), file=sys.stderr)
    return None
