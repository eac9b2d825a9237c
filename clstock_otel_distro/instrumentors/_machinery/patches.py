"""Lazy patches: a target is wrapped when the application imports it, and unwrapped
by ``uninstall()``.

:class:`AttributePatch` (``module:Class.method`` or ``module:function``) and
:class:`ClassPatch` (a class and all its subclasses, present and future) import
nothing: ``install()`` registers a wrapt post-import hook, so the target is patched
the moment the application imports its module (right away if it already has), and
never if it never does. ``uninstall()`` disarms a hook that has not fired yet and
restores the original objects (identity ``is``). A method is wrapped where it is
defined: an inherited method once, on its defining class (spans are named
``DefiningClass.method``). A patch failure is logged, never raised into the import.

A patch given an ``origin`` (the variable and value that named its target) is
watched: :func:`never_imported` lists those whose module the application has not
imported, which the distro reports once uvicorn has started
(:mod:`clstock_otel_distro.patches.uvicorn_unresolved_targets`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.instrumentors._machinery.proxies import TracedFunction, is_traced
from clstock_otel_distro.instrumentors._machinery.specs import Target, WrapperFactory
from clstock_otel_distro.patches import registry
from clstock_otel_distro.patches.registry import UpstreamPatch

_logger = logging.getLogger(__name__)

_ABSENT: Any = object()  # "not in the class __dict__", distinct from None


@dataclass
class _Record:
    """One attribute a patch replaced: where, what was there, what it put there."""

    owner: Any
    name: str
    original: Any  # _ABSENT: the attribute was inherited; uninstall deletes it
    installed: Any


def resolve(root: Any, path: str) -> Any:
    """``root.a.b.c`` for ``path`` ``"a.b.c"`` (AttributeError when absent)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def class_tree(base: type) -> list[type]:
    """``base`` and all its subclasses, transitively, each once."""
    seen: dict[type, None] = {base: None}
    pending = [base]
    while pending:
        cls = pending.pop()
        try:
            children = cls.__subclasses__()
        except TypeError:  # ``type`` itself needs an argument
            continue
        for child in children:
            if child not in seen:
                seen[child] = None
                pending.append(child)
    return list(seen)


class LazyPatch:
    """Patches applied when a module is imported, undone by ``uninstall()``."""

    def __init__(self, module: str, *, group: Any = None, missing_level: int = logging.WARNING,
                 origin: str | None = None):
        self.module = module
        self.group = group  # patches of one instrumentor share a group (see AttributePatch)
        self.missing_level = missing_level
        self.origin = origin  # e.g. "OTEL_PYTHON_CLSTOCK_TRACE_METHODS='m:f'": watched if set
        self.imported = False  # its module's import hook fired while armed
        self._armed = False
        self._lock = threading.RLock()
        self._records: list[_Record] = []

    def install(self) -> LazyPatch:
        """Patch now if the module is imported, else when it is; returns self."""
        self._armed = True
        if self.origin is not None:
            with _watched_lock:
                if self not in _watched:
                    _watched.append(self)
        wrapt.register_post_import_hook(self._on_import, self.module)
        return self

    def uninstall(self) -> None:
        """Disarm the pending import hook and restore every original object."""
        with self._lock:
            self._armed = False
            self._restore()
        with _watched_lock:
            if self in _watched:
                _watched.remove(self)

    def _on_import(self, module: ModuleType) -> None:
        if self._armed:
            self.imported = True
        self._while_armed(self._apply, module, "%s", self.describe())

    def _while_armed(self, apply: Callable[[Any], None], on: Any, *where: Any) -> None:
        # wrapt cannot unregister a hook: one that fires after uninstall() finds the
        # patch disarmed and does nothing. A patch failure is logged, never raised:
        # it would otherwise fail the application's import or class statement.
        with self._lock:
            if not self._armed:
                return
            try:
                apply(on)
            except Exception:
                _logger.warning("clstock-otel could not instrument " + where[0], *where[1:],
                                exc_info=True)

    def describe(self) -> str:
        return self.module

    def configured_as(self) -> str:
        """The target as its origin names it."""
        return self.describe()

    def named_by(self) -> str:
        """`` (origin)`` for a log line about this patch's target, or nothing."""
        return f" ({self.origin})" if self.origin else ""

    def _apply(self, module: ModuleType) -> None:
        raise NotImplementedError

    def _set(self, owner: Any, name: str, original: Any, installed: Any) -> None:
        setattr(owner, name, installed)
        self._records.append(_Record(owner, name, original, installed))

    def _restore(self) -> None:
        for record in reversed(self._records):
            current = (
                record.owner.__dict__.get(record.name, _ABSENT)
                if isinstance(record.owner, type)
                else getattr(record.owner, record.name, _ABSENT)
            )
            if current is not record.installed:
                _logger.debug(
                    "clstock-otel leaves %s.%s alone: replaced since patched",
                    record.owner,
                    record.name,
                )
                continue
            if record.original is _ABSENT:
                delattr(record.owner, record.name)
            else:
                setattr(record.owner, record.name, record.original)
        self._records.clear()


class AttributePatch(LazyPatch):
    """Wrap one ``module:path`` attribute (function, or method on that exact class)."""

    def __init__(
        self,
        module: str,
        path: str,
        wrapper: WrapperFactory,
        *,
        group: Any = None,
        rebind_partialmethods: bool = False,
        missing_level: int = logging.WARNING,
        origin: str | None = None,
    ):
        super().__init__(module, group=group, missing_level=missing_level, origin=origin)
        self.path = path
        self.wrapper = wrapper
        self.rebind_partialmethods = rebind_partialmethods

    def describe(self) -> str:
        return f"{self.module}:{self.path}"

    def _apply(self, module: ModuleType) -> None:
        owner_path, _, name = self.path.rpartition(".")
        try:
            owner = resolve(module, owner_path) if owner_path else module
            if isinstance(owner, type):
                original = owner.__dict__.get(name, _ABSENT)
                raw = original if original is not _ABSENT else inspect.getattr_static(owner, name)
            else:
                raw = original = getattr(owner, name)
        except AttributeError:
            _logger.log(self.missing_level, "clstock-otel: %s has no %s; not traced%s",
                        self.module, self.path, self.named_by())
            return
        if is_traced(raw):
            if raw._self_clstock_group is self.group and self.group is not None:
                # An alias of a function this instrumentor already wrapped under another
                # name (``yfinance.download`` is bound from ``yfinance.multi.download``
                # after that was patched): restore it too on uninstall.
                self._records.append(_Record(owner, name, raw.__wrapped__, raw))
            else:
                _logger.debug("clstock-otel: %s is already traced", self.describe())
            return
        proxy = TracedFunction(raw, self.wrapper(Target(owner, name, raw)), self.group,
                               owner, name)
        self._set(owner, name, original, proxy)
        if self.rebind_partialmethods and isinstance(owner, type):
            self._rebind_partialmethods(owner, raw, proxy)

    def _rebind_partialmethods(self, owner: type, original: Any, proxy: Any) -> None:
        # ``get = partialmethod(request, "GET")`` (older curl_cffi) holds the function
        # object itself: wrapping ``request`` on the class would not reach it. Rebuild
        # each such partialmethod around the wrapper, on the class and its subclasses.
        for cls in class_tree(owner):
            for attr, value in list(vars(cls).items()):
                if isinstance(value, functools.partialmethod) and value.func is original:
                    rebound = functools.partialmethod(proxy, *value.args, **value.keywords)
                    self._set(cls, attr, value, rebound)


class ClassPatch(LazyPatch):
    """Wrap methods of a class and of all its subclasses, present and future."""

    def __init__(self, module: str, qualname: str, methods: Mapping[str, WrapperFactory], *,
                 group: Any = None, missing_level: int = logging.WARNING,
                 require_methods: bool = False, origin: str | None = None):
        super().__init__(module, group=group, missing_level=missing_level, origin=origin)
        self.qualname = qualname
        self.methods = dict(methods)
        self.require_methods = require_methods  # log a listed method no class defines
        self._hooks: list[tuple[type, Any, Any]] = []

    def describe(self) -> str:
        return f"{self.module}:{self.qualname}"

    def configured_as(self) -> str:
        # A method named on its own (OTEL_PYTHON_CLSTOCK_TRACE_METHODS) as it was written.
        if self.require_methods and len(self.methods) == 1:
            return f"{self.describe()}.{next(iter(self.methods))}"
        return self.describe()

    def _apply(self, module: ModuleType) -> None:
        try:
            base = resolve(module, self.qualname)
        except AttributeError:
            _logger.log(self.missing_level, "clstock-otel: %s has no class %s; not traced%s",
                        self.module, self.qualname, self.named_by())
            return
        if not isinstance(base, type):
            _logger.warning("clstock-otel: %s is not a class; not traced%s", self.describe(),
                            self.named_by())
            return
        tree = class_tree(base)
        for cls in tree:
            self._patch_methods(cls)
        self._install_subclass_hook(base)
        if self.require_methods:
            for name in self.methods:
                if not any(name in vars(cls) for cls in tree):
                    where = next((c.__qualname__ for c in base.__mro__ if name in vars(c)), None)
                    _logger.log(self.missing_level, "clstock-otel: %s defines no method %s%s;"
                                " not traced%s", self.describe(), name,
                                f" (inherited from {where}: name that class)" if where else "",
                                self.named_by())

    def _patch_methods(self, cls: type) -> None:
        # Only what ``cls`` itself defines: an inherited method is wrapped once, on the
        # class that defines it, and every subclass calls that same wrapper.
        namespace = vars(cls)
        for name, wrapper in self.methods.items():
            raw = namespace.get(name, _ABSENT)
            if raw is _ABSENT or is_traced(raw):
                continue
            function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if not inspect.isfunction(function) or getattr(function, "__isabstractmethod__", False):
                continue  # properties, abstract stubs, odd descriptors: nothing to run
            target = Target(cls, name, raw, track_runtime_class=True)
            self._set(cls, name, raw, TracedFunction(raw, wrapper(target), self.group, cls, name))

    def _install_subclass_hook(self, base: type) -> None:
        # Subclasses defined after instrumentation: Python calls the nearest
        # ``__init_subclass__`` in the new class's MRO while creating it, so one hook on
        # the base sees every future subclass, however deep. The hook first runs what
        # would have run without it: the base's own ``__init_subclass__`` if it defines
        # one (bound through the descriptor protocol, as Python does), else the next one
        # up the MRO via super(base, cls). Then it wraps the new class's overrides. On
        # uninstall the base's ``__dict__`` gets back exactly what it had (its own hook,
        # or nothing). If someone installed their own hook on top of ours meanwhile,
        # ours stays in their chain, disarmed: it only chains.
        previous = vars(base).get("__init_subclass__", _ABSENT)
        patch = self

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            if previous is _ABSENT:
                super(base, cls).__init_subclass__(**kwargs)
            else:
                previous.__get__(None, cls)(**kwargs)
            if patch._armed:
                patch._on_subclass(cls)

        __init_subclass__.__qualname__ = f"{base.__qualname__}.__init_subclass__"
        hook = classmethod(__init_subclass__)
        base.__init_subclass__ = hook  # type: ignore[assignment]
        self._hooks.append((base, previous, hook))

    def _on_subclass(self, cls: type) -> None:
        self._while_armed(self._patch_methods, cls, "subclass %s of %s", cls.__qualname__,
                          self.describe())

    def _restore(self) -> None:
        for base, previous, hook in reversed(self._hooks):
            if vars(base).get("__init_subclass__") is not hook:
                continue  # wrapped by someone since: ours stays in their chain, disarmed
            if previous is _ABSENT:
                delattr(base, "__init_subclass__")
            else:
                base.__init_subclass__ = previous  # type: ignore[assignment]
        self._hooks.clear()
        super()._restore()


class RegisteredPatch:
    """A registry entry (:mod:`clstock_otel_distro.patches`) that an instrumentor installs
    with its own patches, and undoes with them."""

    def __init__(self, patch: UpstreamPatch) -> None:
        self.patch = patch

    def install(self) -> RegisteredPatch:
        registry.install(self.patch)
        return self

    def uninstall(self) -> None:
        registry.uninstall(self.patch)

    def describe(self) -> str:
        return self.patch.target


# Installed patches with an origin, in installation order (see never_imported).
_watched: list[LazyPatch] = []
_watched_lock = threading.Lock()


def never_imported() -> list[LazyPatch]:
    """The installed patches with an origin whose module the application has not imported.

    Imports nothing: a module counts as imported once it is in ``sys.modules``.
    """
    with _watched_lock:
        watched = list(_watched)
    return [patch for patch in watched
            if patch._armed and not patch.imported and patch.module not in sys.modules]


def install_all(patches: Iterable[LazyPatch]) -> list[LazyPatch]:
    """Install each patch; returns them as a list (to give to :func:`uninstall_all`)."""
    return [patch.install() for patch in patches]


def uninstall_all(patches: Iterable[LazyPatch]) -> None:
    """Uninstall patches in reverse order (each failure logged, the rest still undone)."""
    for patch in reversed(list(patches)):
        try:
            patch.uninstall()
        except Exception:
            _logger.warning(
                "clstock-otel could not uninstrument %s", patch.describe(), exc_info=True
            )
