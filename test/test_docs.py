"""The documents agree with the code: every option read is in cc.ini(5) where it belongs,
every command's ``--help`` matches its man page's SYNOPSIS, every error code is in
doc/protocol.md, and README's folder listing is the tree's.

Options are found two ways, and a name found either way must be documented:

* in the code, by parsing each module (:mod:`ast`) for config reads with a literal name:
  ``cf.get("x")``, ``hcf.getint("x", 1)``, ``self.cf.has_option("x")``,
  ``skytools.Config(...).get("x")`` -- any ``get*``/``has_option`` call on a name ending in
  ``cf``.  This is what the code really reads, including options a template forgot;
* in the INI templates (the ``::`` blocks of class docstrings, ``cc-server --ini``), which
  catch options read indirectly, by a table (``zmq_*``) or a helper (jobmgr's per-job options).

Each module belongs to a *component* whose section of cc.ini(5) must document what it reads:
a handler's ``.SS <short name>``, a daemon's ``.SS <module name>``, the shared ``.SH`` groups
(``[ccserver] OPTIONS``, ``ZEROMQ SOCKET OPTIONS``, ...).  An option counts as documented in a
section when the section, the ``.SH`` preamble above its ``.SS``, or a ``.SH`` section either
names in bold ("also takes the ZEROMQ SOCKET OPTIONS") has it in bold: a ``.TP`` item, or
"Also takes compression ... as infosender does".  A module that reads options but belongs to
no component fails the test, so a new module cannot escape it.
"""

import ast
import glob
import os
import re
import shlex
import subprocess
import sys
import textwrap
import unittest
from typing import Dict, Iterator, List, Optional, Set, Tuple

from harness import REPO_DIR, child_env

from cc.crypto import CryptoContext
from cc.crypto.curve import TEMPLATE_CLIENT, TEMPLATE_SERVER
from cc.daemon import DAEMONS, CCDaemon, load_daemon_class
from cc.handler import HANDLERS, load_handler_class
from cc.server import CCServer
from cc.sockopts import TEMPLATE as SOCKOPTS_TEMPLATE

MAN_DIR = os.path.join(REPO_DIR, "doc", "man")
CC_INI_5 = os.path.join(MAN_DIR, "cc.ini.5")

#: skytools.Config readers; the first argument is the option name
CONFIG_GETTERS = {
    "get", "getint", "getfloat", "getboolean", "getlist", "getfile", "getbytes", "getdict",
    "getwild", "has_option",
}  # fmt: skip
OPTION_RE = re.compile(r"[a-z][a-z0-9_-]*\Z")
#: an option line of an INI template: ``name = value`` or ``#name = value``
TEMPLATE_LINE_RE = re.compile(r"^\s*[#;]?\s*([a-z][a-z0-9_-]*)\s*=", re.M)
#: template sections whose keys are not options (route patterns)
NOT_OPTION_SECTIONS = ("routes",)
#: receivers that hold [ccserver] wherever they are read (daemons and jobmgr read the server's
#: job name and socket)
SERVER_CF = "server_cf"

#: modules that read options for others: module -> the sections that must document them
#: (each one: a helper shared by two daemons is documented, or referred to, in both)
HELPERS = {
    "cc/files/infomsg.py": ("infosender", "infoscript"),
    "cc/daemon/discovery_probes.py": ("discovery",),
    "cc/daemon/plugins/__init__.py": ("pg_logforward",),
    "cc/daemon/plugins/pg_logforward/forward.py": ("pg_logforward",),
    "cc/daemon/plugins/pg_logforward/example_logwatch.py": ("pg_logforward",),
    "cc/message.py": ("[ccserver] OPTIONS", "DAEMONS"),
    "cc/failover.py": ("proxy",),
    "cc/sharding.py": ("proxy",),
    "cc/proxylink.py": ("proxy",),
    "cc/audit.py": ("taskrouter", "dbhandler", "taskexec"),
}
#: run by jobmgr, a daemon section also takes the job options documented under jobmgr
JOB_OPTIONS_SECTION = "jobmgr"


class Component:
    """Something with options: the man page section documenting them, its modules, templates."""

    def __init__(
        self, section: str, modules: List[str], templates: List[str], extra: Tuple[str, ...] = ()
    ) -> None:
        self.section = section
        self.modules = modules
        self.templates = templates
        #: further sections its options may be documented in
        self.extra = extra


def module_path(modname: str) -> str:
    return modname.replace(".", "/") + ".py" if modname != "cc" else "cc/__init__.py"


def class_path(cls: type) -> str:
    path = module_path(cls.__module__)
    if os.path.exists(os.path.join(REPO_DIR, path)):
        return path
    return module_path(cls.__module__ + ".__init__")


def components() -> List[Component]:
    """Every component of the package that reads options, found through the registries."""
    found = [
        Component("[ccserver] OPTIONS", ["cc/server.py"], [CCServer.__doc__ or ""]),
        Component("ZEROMQ SOCKET OPTIONS", ["cc/sockopts.py"], [SOCKOPTS_TEMPLATE]),
        Component(
            "SIGNED AND ENCRYPTED MESSAGES",
            ["cc/crypto/__init__.py"],
            [CryptoContext.__doc__ or ""],
        ),
        Component("CURVE", ["cc/crypto/curve.py"], [TEMPLATE_SERVER, TEMPLATE_CLIENT]),
        Component("HANDLER SECTIONS", ["cc/handler/__init__.py"], []),
        Component("DAEMONS", [class_path(CCDaemon)], [CCDaemon.__doc__ or ""]),
        Component("[taskclient]", ["cc/taskclient.py"], []),
    ]
    for name, modname in sorted(HANDLERS.items()):
        cls = load_handler_class("test", name)
        found.append(Component(name, [module_path(modname)], [cls.__doc__ or ""]))
    daemon_classes = {load_daemon_class(name) for name in DAEMONS}
    for cls in sorted(daemon_classes, key=lambda c: c.__module__):
        name = cls.__module__.rsplit(".", 1)[-1]
        found.append(
            Component(name, [class_path(cls)], [cls.__doc__ or ""], extra=(JOB_OPTIONS_SECTION,))
        )
    for path, sections in HELPERS.items():
        for section in sections:
            found.append(Component(section, [path], []))
    return found


# -- options in the code -------------------------------------------------------------------


def is_config(node: ast.AST) -> bool:
    """Whether a call's receiver is a config: ``cf``, ``hcf``, ``self.cf``, ``Config(...)``."""
    if isinstance(node, ast.Name):
        return node.id.endswith("cf")
    if isinstance(node, ast.Attribute):
        return node.attr.endswith("cf")
    if isinstance(node, ast.Call):
        func = node.func
        return getattr(func, "attr", getattr(func, "id", None)) == "Config"
    return False


def option_reads(path: str) -> Iterator[Tuple[str, int, str]]:
    """(option, line, receiver) of every config read with a literal name in ``path``."""
    with open(os.path.join(REPO_DIR, path), encoding="utf8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in CONFIG_GETTERS or not node.args:
            continue
        name = node.args[0]
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            continue
        if OPTION_RE.match(name.value) and is_config(node.func.value):
            yield name.value, node.lineno, ast.unparse(node.func.value)


def package_modules() -> List[str]:
    paths = glob.glob(os.path.join(REPO_DIR, "cc", "**", "*.py"), recursive=True)
    return sorted(os.path.relpath(p, REPO_DIR) for p in paths)


# -- options in templates --------------------------------------------------------------------


def literal_blocks(doc: str) -> List[str]:
    """The ``::`` blocks of a reST docstring (a template string counts as one block)."""
    if "::" not in doc:
        return [doc]
    blocks = []
    lines = textwrap.dedent(doc).splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        blocks.append("\n".join(block))
    return blocks


def template_options(doc: str) -> List[str]:
    """Option names in the INI templates of ``doc``, except in ``[routes]``."""
    names = []
    for block in literal_blocks(doc):
        section = ""
        for line in block.splitlines():
            header = re.match(r"\s*\[([^\]]+)\]", line)
            if header:
                section = header.group(1)
            elif section not in NOT_OPTION_SECTIONS:
                m = TEMPLATE_LINE_RE.match(line)
                if m:
                    names.append(m.group(1))
    return names


# -- the man page ------------------------------------------------------------------------------


def roff_words(line: str) -> List[str]:
    """The bold words of a font macro line: ``.B x``, ``.BR name " (default)"``, ``.RB ( x ,``."""
    m = re.match(r"\.(B|BR|RB|BI|IB)\s+(.*)", line)
    if not m:
        return []
    macro, rest = m.groups()
    rest = rest.replace("\\-", "-").replace("\\(lq", "").replace("\\(rq", "")
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    if macro == "B":
        return [" ".join(tokens)]
    first_bold = macro in ("BR", "BI")
    return [t for i, t in enumerate(tokens) if (i % 2 == 0) == first_bold]


class ManSection:
    """One ``.SH`` or ``.SS`` of a man page: its bold words and its parent ``.SH``."""

    def __init__(self, title: str, parent: Optional[str]) -> None:
        self.title = title
        self.parent = parent
        self.bold: Set[str] = set()


def man_sections(path: str) -> Dict[str, ManSection]:
    """Sections by title; an ``.SS`` by its first word (``.SS proxy (local, remote)``)."""
    sections: Dict[str, ManSection] = {}
    current: Optional[ManSection] = None
    chapter: Optional[str] = None
    with open(path, encoding="utf8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(".SH "):
                chapter = line[4:].strip().strip('"')
                current = sections[chapter] = ManSection(chapter, None)
            elif line.startswith(".SS "):
                title = line[4:].strip().strip('"').split()[0]
                current = sections[title] = ManSection(title, chapter)
            elif current is not None:
                current.bold.update(roff_words(line))
    return sections


def scope(sections: Dict[str, ManSection], title: str, extra: Tuple[str, ...] = ()) -> Set[str]:
    """Titles of the sections where an option of section ``title`` may be documented."""
    titles = {title, *extra}
    parent = sections[title].parent
    if parent:
        titles.add(parent)
    referred = set()
    for name in titles:
        if name in sections:
            referred.update(w for w in sections[name].bold if w in sections and w.isupper())
    return titles | referred


# -- the commands ----------------------------------------------------------------------------


def read(*path: str) -> str:
    with open(os.path.join(REPO_DIR, *path), encoding="utf8") as f:
        return f.read()


def console_scripts() -> Dict[str, str]:
    """Command -> ``module:function`` from setup.py's entry points."""
    return dict(re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', read("setup.py")))


def unshipped() -> Set[str]:
    """Commands debian/rules removes from the package (tools for a source tree, no man page)."""
    return set(re.findall(r"rm -f debian/cc/usr/bin/([\w-]+)", read("debian", "rules")))


def help_text(command: str, entry: str) -> str:
    """``command --help``, run through its entry point; stdout and stderr (some print usage
    to stderr)."""
    modname, func = entry.split(":")
    code = "import sys, %s as m; sys.argv[0] = %r; m.%s()" % (modname, command, func)
    proc = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return proc.stdout + proc.stderr


def usage_of(text: str) -> str:
    """The usage paragraph of a ``--help`` text, without ``usage:`` and the command name."""
    m = re.search(r"^usage: *\S+(.*(?:\n[ \t]+\S.*)*)", text, re.I | re.M)
    if m is None:
        raise AssertionError("no usage line in:\n" + text)
    return " ".join(m.group(1).split())


def render_roff(lines: List[str]) -> List[str]:
    """The synopsis forms (split at ``.br``) of roff lines, as plain text."""
    forms, words = [], []
    for line in lines:
        line = re.sub(r"\\f[BIRP]", "", line.replace("\\-", "-"))
        if line.startswith(".br"):
            forms.append(" ".join(words))
            words = []
            continue
        m = re.match(r"\.(B|I|BR|RB|BI|IB|IR|RI)\s+(.*)", line)
        if not m:
            words.append(line)
            continue
        tokens = shlex.split(m.group(2))
        words.append((" " if len(m.group(1)) == 1 else "").join(tokens))
    forms.append(" ".join(words))
    return [" ".join(f.split()) for f in forms if f.strip()]


def synopsis_of(page: str) -> List[str]:
    """The SYNOPSIS forms of a man page, each without the command name."""
    text = read("doc", "man", page)
    m = re.search(r"^\.SH SYNOPSIS\n(.*?)^\.SH ", text, re.M | re.S)
    assert m is not None, "%s has no SYNOPSIS" % page
    return [f.split(None, 1)[1] if " " in f else "" for f in render_roff(m.group(1).splitlines())]


def bracket_groups(text: str) -> List[str]:
    """Top-level tokens of a usage: ``[...]`` groups (nesting kept) and plain words."""
    tokens, depth, current = [], 0, ""
    for char in text:
        if char == " " and depth == 0:
            if current:
                tokens.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current += char
    if current:
        tokens.append(current)
    return tokens


def positionals(usage: str) -> str:
    """The positional arguments of a usage, canonical: lower case, ``{a,b}`` as ``a|b``,
    ``x [x ...]`` as ``x...``; options and their arguments left out."""
    words = []
    for token in bracket_groups(usage):
        inner = token.strip("[]")
        if token.startswith("[") and (inner.startswith("-") or inner == "options"):
            continue  # an option group, or "[options]" standing for all of them
        if token.startswith("-"):
            break  # an option with its arguments (cc-task config.ini --send key=value ...)
        words.append(token)
    text = " ".join(words).lower()
    text = re.sub(r"\{([^}]*)\}", lambda m: m.group(1).replace(",", "|"), text)
    text = re.sub(r"(\S+) \[\1 \.\.\.\]", r"\1...", text)
    return re.sub(r"\s+\.\.\.", "...", text)


def options_in(text: str) -> Set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))


def mentions(text: str, word: str) -> bool:
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


class TestOptionsDocumented(unittest.TestCase):
    """Every option a component reads or templates is in its section of cc.ini(5)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.sections = man_sections(CC_INI_5)
        cls.components = components()

    def undocumented(self) -> List[str]:
        """``<option> (<where the code has it>) is not documented under '<section>'``, sorted."""
        missing = set()
        for comp in self.components:
            if comp.section not in self.sections:
                missing.add("no section %r for %s" % (comp.section, ", ".join(comp.modules)))
                continue
            titles = scope(self.sections, comp.section, comp.extra)
            bold = set().union(*(self.sections[t].bold for t in titles if t in self.sections))
            found = [
                (option, "read at %s:%d" % (path, line))
                for path in comp.modules
                for option, line, receiver in option_reads(path)
                if not receiver.endswith(SERVER_CF)  # see test_server_options_read_anywhere
            ]
            found += [
                (option, "in the INI template of %s" % comp.modules[0])
                for template in comp.templates
                for option in template_options(template)
            ]
            missing.update(
                "%s (%s) is not documented under %r" % (option, origin, comp.section)
                for option, origin in found
                if option not in bold
            )
        return sorted(missing)

    def test_every_option_is_documented_in_its_section(self):
        missing = self.undocumented()
        self.assertEqual(missing, [], "doc/man/cc.ini.5:\n  " + "\n  ".join(missing))

    def test_server_options_read_anywhere(self):
        """``server_cf.get("job_name")`` in a daemon reads [ccserver]: documented there."""
        bold = self.sections["[ccserver] OPTIONS"].bold
        for path in package_modules():
            for option, line, receiver in option_reads(path):
                if receiver.endswith(SERVER_CF):
                    self.assertIn(option, bold, "%s:%d reads [ccserver] %s" % (path, line, option))

    def test_every_module_that_reads_options_has_a_component(self):
        known = {path for comp in self.components for path in comp.modules}
        orphans = []
        for path in package_modules():
            names = {o for o, _, r in option_reads(path) if not r.endswith(SERVER_CF)}
            if names and path not in known:
                orphans.append("%s reads %s" % (path, ", ".join(sorted(names))))
        self.assertEqual(orphans, [], "add these modules to test_docs.HELPERS or a component")

    def test_the_scans_find_options(self):
        """Guard against a scan silently finding nothing."""
        read_names = {o for p in package_modules() for o, _, _ in option_reads(p)}
        for name in ("cc-socket", "remote-cc", "ping-remotes", "queue-size", "dstdir", "sudo"):
            self.assertIn(name, read_names)
        templated = set(template_options(SOCKOPTS_TEMPLATE))
        self.assertIn("zmq_reconnect_ivl_max", templated)
        jobmgr = load_handler_class("test", "jobmgr")
        self.assertIn("keepalive-timeout", template_options(jobmgr.__doc__ or ""))
        self.assertNotIn("job", template_options(jobmgr.__doc__ or ""))  # a route, not an option
        self.assertIn("zmq_hwm", self.sections["ZEROMQ SOCKET OPTIONS"].bold)
        self.assertGreaterEqual(len(self.components), 25)

    def test_a_missing_option_is_reported_with_its_place(self):
        """The check fails, naming option, file and section, when a section lacks an option."""
        del_proxy = self.sections["proxy"].bold - {"queue-bytes"}
        saved = self.sections["proxy"].bold
        self.sections["proxy"].bold = del_proxy
        try:
            missing = self.undocumented()
        finally:
            self.sections["proxy"].bold = saved
        expected = r"queue-bytes \(read at cc/proxylink\.py:\d+\) is not documented under"
        self.assertTrue(any(re.match(expected + " 'proxy'", m) for m in missing), missing)


class TestCommandsDocumented(unittest.TestCase):
    """Every command's ``--help`` agrees with its man page."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.helps = {c: help_text(c, e) for c, e in sorted(console_scripts().items())}

    def shipped(self) -> List[str]:
        return [c for c in sorted(self.helps) if c not in unshipped()]

    def test_every_command_has_a_man_page(self):
        pages = os.listdir(MAN_DIR)
        missing = [c for c in self.shipped() if c + ".1" not in pages]
        self.assertEqual(missing, [], "commands without doc/man/<command>.1")
        for command in os.listdir(os.path.join(REPO_DIR, "bin")):
            self.assertIn(command, self.helps, "bin/%s is not a setup.py entry point" % command)

    def test_every_command_answers_help_with_its_usage(self):
        for command, text in self.helps.items():
            with self.subTest(command=command):
                usage_of(text)

    def test_synopsis_arguments_match_help(self):
        for command in self.shipped():
            with self.subTest(command=command):
                usage = usage_of(self.helps[command])
                synopsis = synopsis_of(command + ".1")[0]
                self.assertEqual(
                    positionals(synopsis),
                    positionals(usage),
                    "doc/man/%s.1 SYNOPSIS %r, --help usage %r" % (command, synopsis, usage),
                )

    def test_synopsis_options_exist(self):
        for command in self.shipped():
            with self.subTest(command=command):
                offered = options_in(self.helps[command])
                for form in synopsis_of(command + ".1"):
                    if form.startswith("-m "):
                        continue  # python3 -m cc.daemon.<daemon>: the interpreter's option
                    unknown = sorted(options_in(form) - offered)
                    where = "doc/man/%s.1 SYNOPSIS" % command
                    self.assertEqual(unknown, [], "in %s, not in --help" % where)

    def test_help_options_are_in_the_man_page(self):
        for command in self.shipped():
            with self.subTest(command=command):
                text = read("doc", "man", command + ".1").replace("\\-", "-")
                for opt in sorted(options_in(self.helps[command]) - {"-h", "--help"}):
                    self.assertTrue(mentions(text, opt), "%s not in doc/man/%s.1" % (opt, command))


#: calls that carry an error ``code``, and the position of the code among their arguments
ERROR_CALLS = {
    "MessageError": 0,
    "CMSError": 0,
    "CallError": 0,
    "error_reply": 1,
    "answer": 2,  # cc.dispatch.Dispatcher.answer(msg, text, code)
    "reply_error": 2,
    "_refuse": 2,  # infowriter's (logwriter's takes no code there: it never replies)
    "failed": 2,  # tailwriter's, also returned by its workers as (failed, msg, body, code, text)
}


def error_codes() -> Dict[str, str]:
    """Every literal error code in the package, with the first place that uses it."""
    found: Dict[str, str] = {}
    for path in package_modules():
        with open(os.path.join(REPO_DIR, path), encoding="utf8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            code = None
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                pos = ERROR_CALLS.get(name)
                if pos is not None and len(node.args) > pos:
                    code = node.args[pos]
            elif isinstance(node, ast.Tuple) and len(node.elts) > 3:
                if getattr(node.elts[0], "attr", None) == "failed":
                    code = node.elts[3]
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                found.setdefault(code.value, "%s:%d" % (path, node.lineno))
    return found


class TestErrorCodesDocumented(unittest.TestCase):
    """doc/protocol.md's error table has every code the code can send, and no other."""

    def table(self) -> Set[str]:
        text = read("doc", "protocol.md")
        section = text[text.index("## 6. Error codes") : text.index("## 7. ")]
        return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))

    def test_every_code_is_in_the_table(self):
        text = read("doc", "protocol.md")
        found = error_codes()
        missing = sorted("%s (%s)" % (c, w) for c, w in found.items() if "`%s`" % c not in text)
        self.assertEqual(missing, [], "error codes missing from doc/protocol.md")
        for code in ("stopping", "oversize", "untrusted", "bad-data", "sql-error", "unknown-job"):
            self.assertIn(code, found)  # the scan sees every kind of call

    def test_the_table_has_no_stale_code(self):
        stale = sorted(self.table() - set(error_codes()))
        self.assertEqual(stale, [], "codes in doc/protocol.md that no code sends")


#: directories a build or a virtualenv leaves in a source tree
BUILD_DIRS = re.compile(r"^(\..*|build|dist|__pycache__|.*\.egg-info)$")


class TestReadmeLayout(unittest.TestCase):
    """README's "Layout" lists the tree's folders: the top level and the packages' subpackages."""

    def listed(self) -> Set[str]:
        m = re.search(r"^## Layout\n\n((?:    .*\n)+)", read("README.md"), re.M)
        self.assertIsNotNone(m, "README.md has no Layout listing")
        return {line.split()[0].rstrip("/") for line in m.group(1).splitlines()}

    def test_listed_folders_exist(self):
        for path in sorted(self.listed()):
            self.assertTrue(os.path.isdir(os.path.join(REPO_DIR, path)), "README lists " + path)

    def test_every_folder_is_listed(self):
        folders = {
            name
            for name in os.listdir(REPO_DIR)
            if os.path.isdir(os.path.join(REPO_DIR, name)) and not BUILD_DIRS.match(name)
        }
        for package in ("cc", "cctools"):
            folders.update(
                package + "/" + name
                for name in os.listdir(os.path.join(REPO_DIR, package))
                if os.path.exists(os.path.join(REPO_DIR, package, name, "__init__.py"))
            )
        missing = sorted(folders - self.listed())
        self.assertEqual(missing, [], "folders missing from README's Layout")



#: what a measurement diary looks like: a date, the machine's load, a commit measured against
DIARY = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b|load average|\b(main|commit) at [0-9a-f]{7}")


class TestDocsInTheirPlaces(unittest.TestCase):
    """Figures live in doc/performance.md (one table per cc-bench scenario), history in
    CHANGES.md: README and the operator's guide link them and hold no dated diary line."""

    def test_no_dated_diary_line_in_readme_or_guide(self):
        for path in ("README.md", os.path.join("doc", "operators-guide.md")):
            found = [
                "%s:%d: %s" % (path, n, line)
                for n, line in enumerate(read(path).splitlines(), 1)
                if DIARY.search(line)
            ]
            self.assertEqual(found, [], "measurements belong in doc/performance.md")

    def test_the_check_sees_a_diary_line(self):
        for line in ("Measured 2026-11-29 on the shared 2-core machine", "at load average 6-8",
                     "| before (main at e2e37c5) | 139.7 MB |"):  # fmt: skip
            self.assertTrue(DIARY.search(line), line)
        self.assertFalse(DIARY.search("make run     # creates .venv, installs cc"))

    def test_every_bench_scenario_has_a_section(self):
        from cctools.bench.scenarios import SCENARIOS, forward

        headings = re.findall(r"^## (.+)$", read("doc", "performance.md"), re.M)
        named = {word.strip("`,") for heading in headings for word in heading.split()}
        missing = [s for s in (*forward.SCENARIOS, *SCENARIOS) if s not in named]
        self.assertEqual(missing, [], "cc-bench scenarios without a section in doc/performance.md")

    def test_readme_is_an_introduction(self):
        text = read("README.md")
        self.assertLess(len(text.splitlines()), 200, "README reads in five minutes")
        for command in ("make run", "make test"):
            self.assertIn(command, text)
        for page in ("doc/architecture.md", "doc/performance.md", "CHANGES.md"):
            self.assertIn("(%s)" % page, text, "README links " + page)
            self.assertTrue(os.path.exists(os.path.join(REPO_DIR, page)), page)

    def test_architecture_linked_from_the_package(self):
        import cc

        self.assertIn("doc/architecture.md", cc.__doc__ or "")
        text = read("doc", "architecture.md")
        for name in ("Dispatcher.dispatch", "BodyGate.judge", "FORWARDED_UNREAD", "relay"):
            self.assertIn(name, text)


if __name__ == "__main__":
    unittest.main()
