"""The discovery daemon's probes: each looks at one kind of thing on this host.

A probe's :meth:`Probe.run` is blocking (it reads /proc, connects to
databases) and runs on a worker thread.  Values that move all the time
(sizes, free space) are named in ``VOLATILE``: they are reported, but a change
in them alone does not count as something new.
"""

import os
import platform
from typing import Any, Dict, List, Optional, Type

import psycopg2
import skytools

__all__ = ["Probe", "PostgresqlProbe", "HostProbe", "PROBES", "stable"]

#: postmaster.pid lines, in order (PostgreSQL 10 and later)
PIDFILE_FIELDS = ("pid", "data_directory", "started", "port", "socket_dir", "listen", "shmem_key")
POSTMASTER_NAMES = ("postgres", "postmaster")


class Probe:
    """Base: override :meth:`run`; ``cf`` is the daemon's section."""

    VOLATILE: frozenset = frozenset()

    def __init__(self, cf: skytools.Config, proc: str = "/proc") -> None:
        self.cf = cf
        self.proc = proc

    def run(self) -> Any:
        raise NotImplementedError


def stable(value: Any, volatile: frozenset) -> Any:
    """``value`` without the keys in ``volatile``, at any depth: what a change is judged on."""
    if isinstance(value, dict):
        return {k: stable(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [stable(v, volatile) for v in value]
    return value


class PostgresqlProbe(Probe):
    """Running postmasters: data directory, port, version, socket dir; databases and their
    sizes when ``discovery-connect`` gives libpq options to connect with."""

    VOLATILE = frozenset(["size_bytes"])

    def run(self) -> List[Dict[str, Any]]:
        connect = self.cf.get("discovery-connect", "")
        clusters = []
        for pid, datadir in self.postmasters():
            cluster = self.read_cluster(pid, datadir)
            if cluster is None:
                continue
            if connect:
                cluster.update(self.databases(cluster, connect))
            clusters.append(cluster)
        return sorted(clusters, key=lambda c: c["data_directory"])

    def postmasters(self) -> List[tuple]:
        """(pid, data directory) of each running postmaster (its children rename themselves)."""
        found = []
        for name in os.listdir(self.proc):
            if not name.isdigit():
                continue
            try:
                with open(os.path.join(self.proc, name, "cmdline"), "rb") as f:
                    argv = [a.decode("utf8", "replace") for a in f.read().split(b"\0") if a]
                if not argv or os.path.basename(argv[0]) not in POSTMASTER_NAMES:
                    continue
                datadir = _option(argv, "-D") or self._environ(name).get("PGDATA")
                if datadir:
                    cwd = os.readlink(os.path.join(self.proc, name, "cwd"))
                    found.append((int(name), os.path.normpath(os.path.join(cwd, datadir))))
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return found

    def _environ(self, pid: str) -> Dict[str, str]:
        with open(os.path.join(self.proc, pid, "environ"), "rb") as f:
            pairs = [e.decode("utf8", "replace").partition("=") for e in f.read().split(b"\0")]
        return {k: v for k, _, v in pairs if k}

    def read_cluster(self, pid: int, datadir: str) -> Optional[Dict[str, Any]]:
        try:
            with open(os.path.join(datadir, "postmaster.pid"), encoding="utf8") as f:
                lines = f.read().splitlines()
            with open(os.path.join(datadir, "PG_VERSION"), encoding="utf8") as f:
                version = f.read().strip()
        except OSError:
            return None
        info: Dict[str, Any] = dict(zip(PIDFILE_FIELDS, lines))
        if info.get("pid") != str(pid):
            return None  # a stale pid file
        info.pop("shmem_key", None)
        info.update(pid=pid, data_directory=datadir, version=version)
        info["port"] = int(info.get("port") or 0)
        info["started"] = int(info.get("started") or 0)
        return info

    def databases(self, cluster: Dict[str, Any], connect: str) -> Dict[str, Any]:
        host = cluster.get("socket_dir") or "localhost"
        dsn = "host=%s port=%d connect_timeout=5 %s" % (host, cluster["port"], connect)
        try:
            conn = psycopg2.connect(dsn)
            try:
                cur = conn.cursor()
                cur.execute(
                    "select datname, pg_database_size(oid) from pg_database"
                    " where datallowconn order by datname"
                )
                rows = cur.fetchall()
            finally:
                conn.close()
        except psycopg2.Error as ex:
            return {"databases_error": str(ex).strip()}
        return {"databases": [{"name": n, "size_bytes": s} for n, s in rows]}


def _option(argv: List[str], flag: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag) and len(arg) > len(flag):
            return arg[len(flag) :]
    return None


class HostProbe(Probe):
    """OS, kernel, CPUs, memory and local disks."""

    VOLATILE = frozenset(["free_bytes"])

    def run(self) -> Dict[str, Any]:
        return {
            "os": platform.system(),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "memory_bytes": self.memory(),
            "disks": self.disks(),
        }

    def memory(self) -> int:
        try:
            with open(os.path.join(self.proc, "meminfo"), encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def disks(self) -> List[Dict[str, Any]]:
        result = []
        try:
            with open(os.path.join(self.proc, "mounts"), encoding="utf8") as f:
                mounts = [line.split()[:3] for line in f]
        except OSError:
            return result
        for device, mountpoint, fstype in mounts:
            if not (device.startswith("/dev/") or mountpoint == "/"):
                continue
            try:
                st = os.statvfs(mountpoint)
            except OSError:
                continue
            result.append(
                {
                    "device": device,
                    "mountpoint": mountpoint,
                    "fstype": fstype,
                    "size_bytes": st.f_blocks * st.f_frsize,
                    "free_bytes": st.f_bavail * st.f_frsize,
                }
            )
        return result


#: ``probes =`` names
PROBES: Dict[str, Type[Probe]] = {"postgresql": PostgresqlProbe, "host": HostProbe}
