"""Authorization by verified signer: who may send a message type, call a function, run a task.

Loop-free policy.  A policy is a config section whose keys are dotted names
(message types, database functions or task modules) and whose values say
which signers may use every name under that key; the longest key that is the
name or a dotted prefix of it decides, as routes match, and ``*`` is the
default.  A name no key covers is allowed, as without a policy::

    [policy]
    # only operators send tasks and call functions; hosts write about themselves
    task.send = O=Example, OU=operators
    db = OU=operators; CN=app-*, issuer=*Service CA*
    log = *

A value lists alternatives separated by ``;``; an alternative holds when
all its ``FIELD=pattern`` conditions (separated by ``,``) hold for the
signer's certificate (a comma not followed by ``FIELD=`` belongs to the
pattern: one-line names have commas of their own).  FIELD is a subject field (``CN``, ``O``, ``OU``,
``C``, ``ST``, ``L``, ``emailAddress``), ``subject`` (the one-line subject),
``issuer`` (the issuing CA's one-line subject), ``serial`` (decimal) or
``fingerprint`` (SHA-256 of the certificate, hex, colons allowed); the
pattern is shell-style (``fnmatch``, case-sensitive).  ``*`` alone is any
verified signer; an empty value is nobody.  An unsigned message matches
nothing: a policy needs a verifying gate (``cms-verify-ca``).

A signer's host identity (what it may register, reply for and write about)
is its certificate's ``CN`` (see :func:`signer_host`), and the hosts the
operator's ``host-signers`` section lets it act for (:class:`HostSigners`).
"""

import fnmatch
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

import skytools
from skytools.config import ConfigError

from cc.options import Option

__all__ = ["Policy", "HostSigners", "Signers", "signer_host", "signer_brief", "foreign_host",
           "FORBIDDEN", "POLICY_OPTIONS"]  # fmt: skip

#: the error code of every refusal by policy or identity
FORBIDDEN = "forbidden"

#: the certificate fields a condition may name
FIELDS = ("CN", "O", "OU", "C", "ST", "L", "emailAddress", "subject", "issuer", "serial",
          "fingerprint")  # fmt: skip
_FIELD_BY_LOWER = {name.lower(): name for name in FIELDS}
KEY_RE = re.compile(r"^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)$")
#: a comma before the next FIELD= ends a condition: one-line subjects have commas of their own
#: what a mistyped field after a comma looks like inside a pattern
TYPO_RE = re.compile(r",\s*[A-Za-z_]*\s*=")
CONDITION_SPLIT_RE = re.compile(r",\s*(?=(?:%s)\s*=)" % "|".join(FIELDS), re.IGNORECASE)


def signer_host(signer: Optional[Dict[str, Any]]) -> Optional[str]:
    """The host name a verified signer stands for: its certificate's ``CN`` (None: unsigned)."""
    if not signer:
        return None
    name = signer.get("CN")
    return name if isinstance(name, str) and name else None


def foreign_host(
    signer: Optional[Dict[str, Any]], host: Any, others: Optional["HostSigners"] = None
) -> str:
    """Why ``signer`` may not speak for ``host`` (register it, reply or write as it), or ''.

    A signer speaks for the host its CN names, and for those ``others``
    (the operator's ``host-signers``) let it.  Nothing is bound where
    nothing was verified (``signer`` None): '' then.
    """
    if not signer:
        return ""
    own = signer_host(signer)
    if own is not None and own == host:
        return ""
    if others is not None and isinstance(host, str) and others.admit(signer, host):
        return ""
    return "%s may act only as host %s, not %s" % (signer.get("subject"), own, str(host)[:100])


def signer_brief(signer: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Who signed, for logs and the audit trail: subject, serial, issuer (None: unsigned)."""
    if not signer:
        return None
    return {key: signer.get(key) for key in ("subject", "serial", "issuer")}


class Signers:
    """The signers one policy value admits (see the module docstring for the syntax)."""

    __slots__ = ("text", "alternatives")

    def __init__(self, text: str) -> None:
        self.text = text
        #: per alternative, (field, compiled pattern) of each condition
        self.alternatives: List[List[Tuple[str, Callable[[str], Any]]]] = []
        for alternative in text.split(";"):
            alternative = alternative.strip()
            if not alternative:
                continue
            if alternative == "*":
                self.alternatives.append([])
                continue
            conditions = []
            for condition in CONDITION_SPLIT_RE.split(alternative):
                field, sep, pattern = condition.strip().partition("=")
                name = _FIELD_BY_LOWER.get(field.strip().lower())
                if not sep or name is None or not pattern.strip():
                    raise ValueError(
                        "signer condition %r: need FIELD=pattern, FIELD one of %s"
                        % (condition.strip(), ", ".join(FIELDS))
                    )
                pattern = pattern.strip()
                if TYPO_RE.search(pattern):
                    raise ValueError("signer condition %r: unknown field after ','" % condition)
                if name == "fingerprint":
                    pattern = pattern.replace(":", "").lower()
                conditions.append((name, re.compile(fnmatch.translate(pattern)).match))
            self.alternatives.append(conditions)

    def admit(self, signer: Optional[Dict[str, Any]]) -> bool:
        """Whether ``signer`` (a verified signer's details; None or {} when unsigned) is one."""
        if not signer:
            return False
        return any(
            all(match(str(signer.get(field, ""))) for field, match in conditions)
            for conditions in self.alternatives
        )

    def __repr__(self) -> str:
        return "Signers(%r)" % self.text


R = TypeVar("R", bound="SignerRules")


class SignerRules:
    """A config section of keys and the :class:`Signers` each names; a base.

    Subclasses say what a key may be (:meth:`check_key`) and what the rules mean.
    """

    def __init__(self, section: str, rules: Dict[str, Signers]) -> None:
        self.section = section
        self.rules = rules

    @classmethod
    def from_section(cls: Type[R], cf: skytools.Config, option: str) -> Optional[R]:
        """The rules in the section ``cf``'s ``option`` names, or None without one."""
        section = cf.get(option, "")
        if not section:
            return None
        if not cf.cf.has_section(section):
            raise ConfigError("[%s] %s = %s: no such section" % (cf.main_section, option, section))
        rules = {}
        for key, value in cf.cf.items(section, raw=True):
            cls.check_key(section, key)
            try:
                rules[key] = Signers(value)
            except ValueError as ex:
                raise ConfigError("[%s] %s: %s" % (section, key, ex)) from None
        return cls(section, rules)

    @staticmethod
    def check_key(section: str, key: str) -> None:
        """Raise ConfigError if ``key`` cannot be a key of these rules; any may, here."""


class HostSigners(SignerRules):
    """Signers the operator lets act for hosts other than their CN (``host-signers``).

    Keys are host names or shell patterns (lower case), values signer specs:
    ``fleet-* = CN=relay-*`` lets the relays' certificates write as any
    ``fleet-`` host.  A host no key covers has only its CN.
    """

    def admit(self, signer: Optional[Dict[str, Any]], host: str) -> bool:
        return any(
            fnmatch.fnmatchcase(host, pattern) and signers.admit(signer)
            for pattern, signers in self.rules.items()
        )


class Policy(SignerRules):
    """Dotted name (or prefix) -> the :class:`Signers` who may use it; read from a section."""

    @staticmethod
    def check_key(section: str, key: str) -> None:
        if not KEY_RE.match(key):
            raise ConfigError("[%s]: %r is not a dotted name, a prefix or *" % (section, key))

    def rule(self, name: str) -> Optional[Tuple[str, Signers]]:
        """(key, signers) of the most specific key covering ``name``; None when none does."""
        rules = self.rules
        lowered = name.lower()
        while True:
            signers = rules.get(lowered)
            if signers is not None:
                return lowered, signers
            dot = lowered.rfind(".")
            if dot < 0:
                break
            lowered = lowered[:dot]
        signers = rules.get("*")
        return ("*", signers) if signers is not None else None

    def refusal(self, name: str, signer: Optional[Dict[str, Any]]) -> str:
        """Why ``signer`` may not use ``name`` (message, mentioning the rule), or ''."""
        found = self.rule(name)
        if found is None or found[1].admit(signer):
            return ""
        who = signer.get("subject") if signer else "an unsigned sender"
        return "%s may not use %s ([%s] %s)" % (who, name, self.section, found[0])


#: what a verifying process reads to decide who may do what (its gate, cc.message.BodyGate)
POLICY_OPTIONS = (
    Option("policy", "str", None, "section of signers allowed per message type prefix",
           protects=True),
    Option("host-signers", "str", None, "section of signers allowed to act for other hosts"),
)  # fmt: skip
