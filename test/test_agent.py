"""The host agent stays light: its processes import only what their config uses.

A local cc and its daemons run on every host of a fleet; cryptography and
asn1crypto cost about 12 MB per process, psycopg2 a few more, and a daemon has
no use for the server's modules.  These tests look at real processes
(``cc-bench agent`` starts the original's cclocal.ini with all five daemons)
and at what each entry point imports, not at timings.
"""

import json
import os
import subprocess
import sys

from harness import CCTestCase, child_env
from pki import PKI

#: never in an agent process unless its config asks for them
HEAVY = ("cryptography", "asn1crypto", "psycopg2", "cc.crypto", "cc.db", "tornado.web")
#: the daemons of a typical host (discovery is left out: probing PostgreSQL is its job)
AGENT_DAEMONS = (
    "cc.daemon.infosender",
    "cc.daemon.infoscript",
    "cc.daemon.taskrunner",
    "cc.daemon.logtail",
    "cc.daemon.pg_logforward",
)
#: what the local cc of cclocal.ini loads
LOCAL_SERVER = (
    "cc.server",
    "cc.handler.proxy",
    "cc.handler.echo",
    "cc.handler.locallogger",
    "cc.handler.jobmgr",
)

SHOW_MODULES = "import importlib, json, sys\n%s\nprint(json.dumps(sorted(sys.modules)))"


class TestAgentImports(CCTestCase):
    def modules_after(self, code):
        result = self.run_command([sys.executable, "-c", SHOW_MODULES % code])
        self.assertEqual(result.returncode, 0, result.stderr)
        return set(json.loads(result.stdout))

    def heavy_in(self, modules):
        return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))

    def test_daemons_import_no_crypto_database_or_server_code(self):
        for name in AGENT_DAEMONS:
            with self.subTest(daemon=name):
                modules = self.modules_after("importlib.import_module(%r)" % name)
                self.assertIn(name, modules)
                self.assertEqual(self.heavy_in(modules), [])
                self.assertNotIn("cc.server", modules)
                self.assertFalse([m for m in modules if m.startswith("cc.handler")])

    def test_local_server_imports_no_crypto_or_database_code(self):
        code = "\n".join("importlib.import_module(%r)" % m for m in LOCAL_SERVER)
        self.assertEqual(self.heavy_in(self.modules_after(code)), [])

    def test_crypto_is_loaded_where_configured(self):
        """The other side: a section with cms-sign gets the crypto code (and a context)."""
        pki = PKI(os.path.join(self.tmp, "keys"))
        ini = os.path.join(self.tmp, "sign.ini")
        with open(ini, "w") as f:
            f.write("[d:x]\ncms-keystore = %s\ncms-sign = user1\n[d:y]\nzmq_hwm = 10\n" % pki.dir)
        code = (
            "import skytools\nfrom cc.security import crypto_context\n"
            "assert crypto_context(skytools.Config('d:y', %r)) is None\n"
            "assert 'cryptography' not in sys.modules\n"
            "assert crypto_context(skytools.Config('d:x', %r)) is not None" % (ini, ini)
        )
        modules = self.modules_after(code)
        self.assertIn("cc.crypto", modules)
        self.assertIn("cryptography", modules)


class TestAgentAtRest(CCTestCase):
    def test_running_agent_loads_no_crypto_or_database_library(self):
        """All five daemons and the local cc, running: none has their shared objects mapped."""
        result = subprocess.run(
            [sys.executable, "-m", "cctools.bench", "agent", "--seconds", "1", "--settle", "0.5",
             "--json"],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["log_errors"], [])
        processes = report["processes"]
        self.assertEqual(
            set(processes),
            {"infosender", "infoscript", "taskrunner", "logtail", "pg_logforward", "cclocal",
             "reference"},
        )  # fmt: skip
        for name, values in processes.items():
            self.assertEqual(values["heavy"], [], name)
            self.assertGreater(values["pss_mb"], 0, name)
        agent = report["agent"]
        self.assertGreater(agent["pss_mb"], processes["reference"]["pss_mb"])
        self.assertGreater(agent["pss_vs_reference"], 1)
