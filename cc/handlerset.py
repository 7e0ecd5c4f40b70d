"""From ``[routes]`` to running handlers, and from one config to the next on reload.

:class:`RoutePlan` reads the routes and the handler sections they name,
imports the handler classes and checks them against the server role; it
creates nothing, so a bad config is found before the server forks or before a
reload touches the running handlers.

:class:`HandlerSet` turns a plan into instances, one per section however many
routes name it.  On reload it keeps every instance whose section (and the
sections it forwards to) did not change, creates the new ones and stops the
ones no longer needed.
"""

import asyncio
import configparser
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Type

import skytools

from cc.handler import (
    HANDLER_KEYS,
    HANDLERS,
    CCHandler,
    HandlerConfigError,
    handler_type_name,
    load_handler_class,
)
from cc.options import check_section, section_config
from cc.routing import RouteTable, parse_pattern

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler.serverview import ServerView

__all__ = ["RoutePlan", "HandlerSet", "ROLES", "role_allows"]

log = logging.getLogger("cc.server")

#: server role -> the handler roles (``CC_ROLES``) it runs.  The seed's roles:
#: ``local`` (loopback; jobmgr, daemons, proxies onward), ``proxy`` (forwards
#: and the generic handlers), ``end-service`` (the writers, dbhandler,
#: taskrouter and the generic handlers); the original's ``remote`` is proxy and
#: end-service together.  A plug-in handler declaring the original's ``remote``
#: is an end-service handler.  ``insecure`` (no ``cc-role``) runs everything.
ROLE_ACCEPTS: Dict[str, FrozenSet[str]] = {
    "local": frozenset(["local"]),
    "proxy": frozenset(["proxy"]),
    "end-service": frozenset(["end-service", "remote"]),
    "remote": frozenset(["proxy", "end-service", "remote"]),
}
ROLES = tuple(ROLE_ACCEPTS) + ("insecure",)


def role_allows(role: str, cls: Type[CCHandler]) -> bool:
    """Whether a server in ``role`` may run handler class ``cls``."""
    return role == "insecure" or not ROLE_ACCEPTS[role].isdisjoint(cls.CC_ROLES)


def handlers_in_role(role: str) -> List[str]:
    """The registered handlers a server in ``role`` may run (for error messages)."""
    allowed = []
    for name in sorted(HANDLERS):
        try:
            cls = load_handler_class(name, name)
        except HandlerConfigError:
            continue  # an optional dependency missing: not worth failing the message
        if role_allows(role, cls):
            allowed.append(name)
    return allowed


Fingerprint = Tuple[object, ...]


class SectionPlan:
    """One handler section: its class, its config and what it depends on."""

    def __init__(self, name: str, cls: Type[CCHandler], cf: skytools.Config) -> None:
        self.name = name
        self.cls = cls
        self.cf = cf
        items = [tuple(sorted(cf.cf.items(name, raw=True)))]
        for option in cls.SECTION_LISTS:
            for listed in cf.getlist(option, []):
                if cf.cf.has_section(listed):
                    items.append((listed,) + tuple(sorted(cf.cf.items(listed, raw=True))))
        self.items = tuple(items)
        self.references = [cf.get(opt) for opt in cls.REFERENCES if cf.has_option(opt)]


class RoutePlan:
    """The routes and handler sections of one config file, validated.

    ``cf`` is the file as the server read it; each handler section is a view
    of it (:func:`cc.options.section_config`), checked against its handler's
    declared options before anything is made.
    """

    def __init__(self, cf: skytools.Config, role: str, defaults: Dict[str, str]) -> None:
        filename = cf.filename or ""
        self.filename = filename
        self.server_cf = cf
        self.role = role
        self.routes: List[Tuple[str, List[str]]] = []
        #: unknown options of the handler sections (and of what they refer to)
        self.warnings: List[str] = []
        self.sections: Dict[str, SectionPlan] = {}
        raw = configparser.RawConfigParser()
        raw.optionxform = str  # type: ignore[assignment,method-assign]  # keep pattern case
        raw.read(filename)
        if not raw.has_section("routes"):
            raise HandlerConfigError("Wrong config file, no section 'routes'")
        for pattern, value in raw.items("routes"):
            parse_pattern(pattern)
            names = [n.strip() for n in value.split(",") if n.strip()]
            if not names:
                raise HandlerConfigError("[routes]: %s names no handler" % pattern)
            for name in names:
                self._add_section(name, defaults, ())
            self.routes.append((pattern, names))

    def _add_section(self, name: str, defaults: Dict[str, str], chain: Tuple[str, ...]) -> None:
        if name in chain:
            raise HandlerConfigError(
                "[%s]: forwarding loop %s" % (name, " -> ".join(chain + (name,)))
            )
        if name in self.sections:
            return
        try:
            cf = section_config(self.server_cf, name, defaults)
            typename = handler_type_name(cf)
        except configparser.NoSectionError:
            raise HandlerConfigError("no section [%s] for handler %s" % (name, name)) from None
        except configparser.NoOptionError:
            raise HandlerConfigError("[%s]: needs 'handler =' (or 'plugin =')" % name) from None
        cls = load_handler_class(name, typename)
        if not role_allows(self.role, cls):
            raise HandlerConfigError(
                "[%s]: handler %s cannot be run in role %s (it runs in: %s); role %s allows: %s"
                % (
                    name,
                    typename,
                    self.role,
                    ", ".join(cls.CC_ROLES),
                    self.role,
                    ", ".join(handlers_in_role(self.role)),
                )
            )
        self.warnings += check_section(cf, HANDLER_KEYS + cls.OPTIONS)
        self.warnings += cls.check_config(cf, self.server_cf)
        plan = SectionPlan(name, cls, cf)
        self.sections[name] = plan
        for ref in plan.references:
            self._add_section(ref, defaults, chain + (name,))

    def fingerprint(self, name: str) -> Fingerprint:
        """What a handler instance depends on: its class, its section, its targets'."""
        plan = self.sections[name]
        return (plan.cls, plan.items) + tuple(self.fingerprint(ref) for ref in plan.references)


class HandlerSet:
    """The running handler instances, keyed by section name; each is made with ``server``."""

    def __init__(self, server: "ServerView") -> None:
        self.server = server
        self.instances: Dict[str, Tuple[Fingerprint, CCHandler]] = {}
        self._building: Optional[Dict[str, Tuple[Fingerprint, CCHandler]]] = None
        self._plan: Optional[RoutePlan] = None
        self._changes: List[Callable[[], None]] = []
        #: section -> the sections it forwards to, as the plan last applied says
        self._references: Dict[str, List[str]] = {}

    def apply(self, plan: RoutePlan) -> Tuple[RouteTable[CCHandler], List[CCHandler]]:
        """Instances for ``plan``; returns the new route table and the handlers to stop.

        If creating any handler fails, the ones created for this plan are
        stopped, the running set is left as it was, and the error is raised.
        """
        old = self.instances
        self._building, self._plan, self._changes = {}, plan, []
        created: List[CCHandler] = []
        try:
            for name in plan.sections:
                self._get(name, old, created)
            table: RouteTable[CCHandler] = RouteTable()
            for pattern, names in plan.routes:
                table.add(pattern, [self._building[n][1] for n in names])
        except BaseException:
            for handler in created:
                _stop_quietly(handler)
            raise
        finally:
            building, self._building, self._plan = self._building, None, None
            changes, self._changes = self._changes, []
        for change in changes:  # handlers reconfigured in place: only now that all is made
            change()
        kept = {id(h) for _, h in building.values()}
        retired = [h for _, h in old.values() if id(h) not in kept]
        self.instances = building
        self._references = {name: section.references for name, section in plan.sections.items()}
        return table, retired

    def get(self, name: str) -> CCHandler:
        """The instance for section ``name`` (for ``forward-to``); valid while building."""
        if self._building is None or self._plan is None:
            return self.instances[name][1]
        if name not in self._plan.sections:
            raise HandlerConfigError("no section [%s] for handler %s" % (name, name))
        return self._get(name, self.instances, [])

    def _get(
        self,
        name: str,
        old: Dict[str, Tuple[Fingerprint, CCHandler]],
        created: List[CCHandler],
    ) -> CCHandler:
        assert self._building is not None and self._plan is not None
        if name in self._building:
            return self._building[name][1]
        fingerprint = self._plan.fingerprint(name)
        section = self._plan.sections[name]
        handler = self._reuse(old.get(name), fingerprint, section)
        if handler is None:
            handler = section.cls(name, section.cf, self.server)
            created.append(handler)
            log.debug("created handler %s: %s", name, type(handler).__name__)
        self._building[name] = (fingerprint, handler)
        return handler

    def _reuse(
        self,
        previous: Optional[Tuple[Fingerprint, CCHandler]],
        fingerprint: Fingerprint,
        section: SectionPlan,
    ) -> Optional[CCHandler]:
        """The running instance, if its config is unchanged or it takes the change in place."""
        if previous is None:
            return None
        old_fingerprint, handler = previous
        if old_fingerprint == fingerprint:
            return handler
        if type(handler) is not section.cls:
            return None
        change = handler.reconfigure(section.cf)
        if change is None:
            return None
        self._changes.append(change)  # applied once the whole new config is made
        return handler

    def all(self) -> List[CCHandler]:
        return [h for _, h in self.instances.values()]

    def stop_stages(self) -> List[List[CCHandler]]:
        """Every instance, in stages to stop one after the other: first those whose
        children send through this server (``STOPS_FIRST``: jobmgr), then a handler a
        stage after every handler that forwards to it, so what forwards (a delay
        flushing its queue) stops while its target still runs.  Without ``forward-to``
        or jobmgr, one stage."""
        first = [name for name, (_, h) in self.instances.items() if h.STOPS_FIRST]
        referrers: Dict[str, int] = {name: 0 for name in self.instances if name not in first}
        for name in self.instances:
            for ref in self._references.get(name, ()):
                if ref in referrers:
                    referrers[ref] += 1
        stages = [[self.instances[name][1] for name in first]] if first else []
        while referrers:
            # RoutePlan refuses forwarding loops; were one left, its members stop together
            stage = [name for name, n in referrers.items() if n == 0] or list(referrers)
            for name in stage:
                del referrers[name]
                for ref in self._references.get(name, ()):
                    if ref in referrers:
                        referrers[ref] -= 1
            stages.append([self.instances[name][1] for name in stage])
        return stages


def _stop_quietly(handler: CCHandler) -> None:
    """Stop a handler of a plan that failed; a stop that takes time (worker threads
    finishing) runs on, on the loop, so a broken reload leaks no threads."""

    def stopped(done: "asyncio.Future[Any]") -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("stopping %s failed", handler.hname, exc_info=done.exception())

    try:
        stopping = handler.stop()
        if stopping is not None:
            asyncio.ensure_future(stopping).add_done_callback(stopped)
    except Exception:
        log.exception("stopping %s failed", handler.hname)
