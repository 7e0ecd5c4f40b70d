"""Options declared once, as data: checked values, unknown names, INI templates.

Every component declares the options it reads as a tuple of :class:`Option`
next to the code that reads them (``Settings.OPTIONS``, a handler's
``OPTIONS``, a daemon's ``OPTIONS``).  From those rows come:

* :func:`check_section`: each value present is parsed by its kind, and a bad
  one is a :class:`OptionError` naming file, section, option and value; an
  option nobody declared is a warning with the closest known name, or an
  error when it looks like a protection (``cms-*``, ``curve-*``, ...): a
  protection the operator asked for is never silently absent;
* :func:`template`: the ``--ini`` text (from data, not docstrings: it
  survives ``python -OO``);
* the option lists of cc.ini(5), which test_options checks against these rows
  and against what the code reads.

The code still reads values with skytools' typed getters; the check has run
before, at load and reload, so a getter never meets a value it cannot parse.
"""

import difflib
import os
from configparser import Error as ConfigParserError
from configparser import NoSectionError
import textwrap
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import skytools
from skytools.config import ConfigError

__all__ = [
    "Option",
    "OptionError",
    "REQUIRED",
    "SECURITY_PREFIXES",
    "check_section",
    "parse_value",
    "section_config",
    "template",
]

#: the kinds a value can have; ``str`` is free text
KINDS = ("str", "bool", "int", "float", "seconds", "bytes", "path", "list", "enum", "url")

#: a default that says: the option must be given
REQUIRED = object()

#: an unknown option with one of these prefixes is refused, not warned about
SECURITY_PREFIXES = ("cms-", "curve-")

#: what configparser (and skytools' getboolean) accepts as a boolean
BOOLEANS = {"1": True, "yes": True, "true": True, "on": True,
            "0": False, "no": False, "false": False, "off": False}  # fmt: skip

#: URL schemes a ZeroMQ endpoint may have
URL_SCHEMES = ("tcp", "ipc", "inproc")


class Option(NamedTuple):
    """One option: ``name``, ``kind`` (one of :data:`KINDS`), ``default`` (:data:`REQUIRED`
    when it must be given, None when absent means off), ``help``, the original's
    ``aliases``, an enum's ``choices``, ``example`` (a required option's value in
    templates) and ``protects`` (it turns a protection on: its misspelling is refused)."""

    name: str
    kind: str
    default: Any
    help: str
    aliases: Tuple[str, ...] = ()
    choices: Tuple[str, ...] = ()
    example: str = ""
    protects: bool = False

    @property
    def names(self) -> Tuple[str, ...]:
        return (self.name,) + self.aliases


class OptionError(ConfigError):
    """A bad value or a refused option, named with its file and section."""


def parse_value(opt: Option, raw: str) -> Any:
    """``raw`` as ``opt``'s kind; raises ValueError saying what was expected."""
    kind = opt.kind
    text = raw.strip()
    if kind in ("str", "path"):
        return os.path.expanduser(text) if kind == "path" and text not in ("", "-") else text
    if kind == "bool":
        if text.lower() not in BOOLEANS:
            raise ValueError("expected yes or no")
        return BOOLEANS[text.lower()]
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if kind in ("float", "seconds"):
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number" + (" of seconds" if kind == "seconds" else ""))
        if kind == "seconds" and value < 0:
            raise ValueError("expected seconds, not a negative number")
        return value
    if kind == "bytes":
        try:
            return skytools.hsize_to_bytes(text)
        except ValueError:
            raise ValueError("expected a size such as 512K, 64M or 1G") from None
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "enum":  # case-insensitive, as the original's; empty means the default
        if not text:
            return opt.default
        if text.lower() not in opt.choices:
            raise ValueError("expected one of " + ", ".join(opt.choices))
        return text.lower()
    if kind == "url":
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in URL_SCHEMES or not rest:
            raise ValueError("expected a URL such as tcp://127.0.0.1:22632 (tcp, ipc or inproc)")
        return text
    raise AssertionError("unknown kind %r of option %s" % (kind, opt.name))


def where(cf: skytools.Config) -> str:
    """``file [section]`` for error messages."""
    return "%s [%s]" % (cf.filename or "(no file)", cf.main_section)


def check_section(
    cf: skytools.Config,
    declared: Iterable[Option],
    ignored: Sequence[str] = (),
    unknown: bool = True,
) -> List[str]:
    """Check ``cf``'s section against ``declared``; return the warnings, for the caller to
    log or print (at start, logging is not set up yet).

    Raises :class:`OptionError` for a value its kind does not parse, a
    required option missing, or an unknown option that looks like a
    protection.  ``ignored`` names keys accepted without a word (interpolation
    variables, the original's options that mean nothing here); ``unknown = False``
    leaves the undeclared keys alone (a script's own options).
    """
    options = list(declared)
    by_name: Dict[str, Option] = {}
    for opt in options:
        for name in opt.names:
            by_name[name] = opt
    present = _own_keys(cf)
    for opt in options:
        given = [name for name in opt.names if name in present]
        if not given:
            if opt.default is REQUIRED:
                raise OptionError("%s: missing option %s" % (where(cf), opt.name))
            continue
        try:
            raw = cf.cf.get(cf.main_section, given[0], raw=False)
        except ConfigParserError as ex:  # an interpolation that does not resolve
            raise OptionError("%s: %s: %s" % (where(cf), given[0], ex.message)) from None
        try:
            parse_value(opt, raw)
        except ValueError as ex:
            raise OptionError(
                "%s: %s = %s: %s" % (where(cf), given[0], raw.strip(), ex)
            ) from None
    warnings: List[str] = []
    if not unknown:
        return warnings
    protective = [name for opt in options if opt.protects for name in opt.names]
    for name in present:
        if name in by_name or name in ignored or name in cf.defs:
            continue
        close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.75)
        hint = " (did you mean %s?)" % close[0] if close else ""
        if name.startswith(SECURITY_PREFIXES) or (close and close[0] in protective):
            raise OptionError(
                "%s: unknown option %s%s: refused, it looks like a protection that would"
                " be silently off" % (where(cf), name, hint)
            )
        warnings.append("%s: unknown option %s, ignored%s" % (where(cf), name, hint))
    return warnings


class _SectionView(skytools.Config):
    """A section of a file already read: shares that parser, reads nothing again."""

    def __init__(
        self,
        base: skytools.Config,
        section: str,
        user_defs: Dict[str, str],
        override: Optional[Dict[str, str]] = None,
    ) -> None:
        # what skytools.Config.__init__ sets, without its read of the file
        filename = base.filename or ""
        self.defs = {
            "job_name": os.path.splitext(os.path.basename(filename))[0] or section,
            "service_name": section,
            "host_name": base.defs.get("host_name", ""),
            "config_dir": os.path.dirname(filename),
            "config_file": filename,
        }
        self.defs.update(user_defs)
        self.main_section = section
        self.filename = base.filename
        self.override = dict(override or {})
        self.cf = base.cf
        self.reload()

    def reload(self) -> None:
        """Apply the defaults to the section (skytools' reload would read the file again)."""
        if not self.cf.has_section(self.main_section):
            raise NoSectionError(self.main_section)
        for key, value in self.defs.items():
            if not self.cf.has_option(self.main_section, key):
                self.cf.set(self.main_section, key, value)
        for key, value in self.override.items():
            self.cf.set(self.main_section, key, value)

    def clone(self, main_section: str) -> skytools.Config:
        return _SectionView(self, main_section, {})


def section_config(
    base: skytools.Config,
    section: str,
    user_defs: Optional[Dict[str, str]] = None,
    override: Optional[Dict[str, str]] = None,
) -> skytools.Config:
    """``section`` of the file ``base`` was read from, as a :class:`skytools.Config`, without
    reading the file again (the config is read once per load or reload); ``override``
    as skytools' (``--set``).  Raises :class:`configparser.NoSectionError` if there is no
    such section."""
    return _SectionView(base, section, dict(user_defs or {}), override)


def _own_keys(cf: skytools.Config) -> List[str]:
    """The keys written in the section itself (not [DEFAULT]'s, not skytools' variables)."""
    parser = cf.cf
    section = cf.main_section
    if not parser.has_section(section):
        return []
    return [key for key in parser._sections[section]]  # type: ignore[attr-defined]


def template(options: Iterable[Option], active: Sequence[str] = (), width: int = 88) -> str:
    """INI lines for ``options``: the help as comments, then ``#name = default``; a
    required option, or one named in ``active``, is set (to its example), not commented
    out.  One blank line between options."""
    blocks = []
    for opt in options:
        lines = textwrap.wrap(opt.help, width - 2) if opt.help else []
        text = "".join("# %s\n" % line for line in lines)
        if opt.default is REQUIRED or opt.name in active:
            text += "%s = %s\n" % (opt.name, opt.example or format_default(opt))
        else:
            text += ("#%s = %s" % (opt.name, format_default(opt))).rstrip() + "\n"
        blocks.append(text)
    return "\n".join(blocks)


def format_default(opt: Option) -> str:
    if opt.example and opt.default in (None, ""):
        return opt.example
    value = opt.default
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def names(options: Iterable[Option]) -> List[str]:
    """Every name (and alias) of ``options``."""
    return [name for opt in options for name in opt.names]
