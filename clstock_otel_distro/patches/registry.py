"""The registry of the distro's patches to other packages' private code.

Every change the distro makes to code it does not own (a private function of an
upstream instrumentation, a method of the SDK, a method of uvicorn) is one
:class:`UpstreamPatch`: the distribution and symbol it touches, the version range it
was verified on, the variable that switches it off, a check of the shape it expects
and its undo. It is applied through :func:`install`, which waits for the module to be
imported (nothing is imported for a patch) and then applies it only when

- its switch is on,
- the installed distribution is inside the verified range, and
- the symbol still has the shape the patch was written for.

Otherwise the patch stands aside with one warning naming what it would have done,
and the application runs with upstream's own behaviour. ``clstock-otel doctor``
shows each entry with its state (:func:`evaluate`), and tests/distro/test_patches.py
fails loudly when an installed upstream release changes a patched symbol's shape.
"""

from __future__ import annotations

import enum
import importlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from clstock_otel_distro import config
from clstock_otel_distro.patches._hooks import when_imported

__all__ = [
    "PatchState",
    "UpstreamPatch",
    "evaluate",
    "install",
    "state_of",
    "uninstall",
]

_logger = logging.getLogger(__name__)

Undo = Callable[[], None]


class PatchState(str, enum.Enum):
    """Where a patch stands in this process."""

    OFF = "off"  # switched off by its variable
    WAITING = "waiting for import"  # armed; its module is not imported yet
    ACTIVE = "active"
    STOOD_ASIDE = "stood aside"  # version or shape not the verified one
    FAILED = "failed"  # applying it raised; upstream's behaviour is in place
    NOT_INSTALLED = "not installed"  # install() was never called


@dataclass(frozen=True)
class UpstreamPatch:
    """One patch of another package's code, as the registry knows it."""

    name: str
    """Short id, e.g. ``fastapi-route-cache``."""
    distribution: str
    """The installed distribution that owns the symbol (its version is checked)."""
    module: str
    symbol: str
    """The qualified name patched in ``module``, e.g. ``Server.startup``."""
    versions: str
    """The PEP 440 range the patch was verified on."""
    purpose: str
    """What the process loses when the patch stands aside, in a few words."""
    shape: Callable[[ModuleType], str | None]
    """The problem with the module's shape, or None when it is the expected one."""
    apply: Callable[[ModuleType], Undo]
    """Patch the imported module; returns the undo."""
    switch: str | None = None
    """The variable that turns the patch off, or None when it is part of a feature."""
    default: bool = True
    replaces_symbol: bool = True
    """False for a patch that changes state the symbol names instead of replacing it."""
    wanted: Callable[[], str | None] | None = None
    """For a patch of a feature with a setting of its own (no switch): why the feature
    is off, or None when it is on."""

    @property
    def target(self) -> str:
        return f"{self.module}:{self.symbol}"

    def enabled(self) -> bool:
        """Whether the switch (if any) is on."""
        return self.off_reason() is None

    def off_reason(self) -> str | None:
        """Why the patch is off (its switch, or its feature's setting), or None."""
        if self.switch is not None and not config.env_bool(self.switch, self.default):
            return f"{self.switch}=false"
        return self.wanted() if self.wanted is not None else None


@dataclass
class _Record:
    state: PatchState
    detail: str = ""
    undo: Undo | None = None


_records: dict[str, _Record] = {}
_lock = threading.Lock()


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _version_problem(patch: UpstreamPatch) -> str | None:
    version = installed_version(patch.distribution)
    if version is None:
        return f"{patch.distribution} is not installed"
    try:
        inside = SpecifierSet(patch.versions).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion) as exc:
        return f"cannot compare {patch.distribution} {version} with {patch.versions}: {exc}"
    if not inside:
        return f"{patch.distribution} {version} is outside the verified range {patch.versions}"
    return None


def _problem(patch: UpstreamPatch, module: ModuleType) -> str | None:
    problem = _version_problem(patch)
    if problem is None:
        try:
            problem = patch.shape(module)
        except Exception as exc:  # a shape check must never break an import
            problem = f"its shape could not be checked ({type(exc).__name__}: {exc})"
    return problem


def install(patch: UpstreamPatch) -> PatchState:
    """Arm ``patch``: applied when its module is imported (now, if it already is).

    Installing an armed or active patch again does nothing.
    """
    with _lock:
        record = _records.get(patch.name)
        if record is not None and record.state in (PatchState.WAITING, PatchState.ACTIVE):
            return record.state
        off = patch.off_reason()
        if off is not None:
            _records[patch.name] = _Record(PatchState.OFF, off)
            return PatchState.OFF
        _records[patch.name] = _Record(PatchState.WAITING)
    applier = _applier(patch)
    module = sys.modules.get(patch.module)
    if module is not None:
        applier(module)
    else:  # a hook registered earlier for this patch is not registered twice
        when_imported(patch.module, applier, patch.purpose)
    return state_of(patch)[0]


def _applier(patch: UpstreamPatch) -> Callable[[ModuleType], None]:
    def on_import(module: ModuleType) -> None:
        with _lock:
            record = _records.get(patch.name)
            if record is None or record.state is not PatchState.WAITING:
                return  # uninstalled before its module came
            problem = _problem(patch, module)
            if problem is not None:
                _records[patch.name] = _Record(PatchState.STOOD_ASIDE, problem)
                _logger.warning("clstock-otel: %s left as upstream has it (%s): %s",
                                patch.target, patch.purpose, problem)
                return
            try:
                undo = patch.apply(module)
            except Exception as exc:
                _records[patch.name] = _Record(PatchState.FAILED, f"{type(exc).__name__}: {exc}")
                _logger.warning("clstock-otel: patching %s failed (%s): %s: %s",
                                patch.target, patch.purpose, type(exc).__name__, exc)
                _logger.debug("Patch %s failure", patch.name, exc_info=True)
                return
            _records[patch.name] = _Record(PatchState.ACTIVE, undo=undo)

    # when_imported runs each (module, callable) pair once: one callable per patch.
    return _appliers.setdefault(patch.name, on_import)


_appliers: dict[str, Callable[[ModuleType], None]] = {}


def uninstall(patch: UpstreamPatch) -> None:
    """Undo ``patch`` if it is active, and disarm it if it is still waiting."""
    with _lock:
        record = _records.pop(patch.name, None)
    if record is not None and record.undo is not None:
        record.undo()


def state_of(patch: UpstreamPatch) -> tuple[PatchState, str]:
    """The patch's state in this process and why."""
    record = _records.get(patch.name)
    if record is None:
        return PatchState.NOT_INSTALLED, ""
    return record.state, record.detail


def evaluate(patch: UpstreamPatch) -> tuple[PatchState, str]:
    """What :func:`install` would do in a process like this one (imports the module).

    For ``clstock-otel doctor``: ``OFF``, ``ACTIVE`` (would apply), or ``STOOD_ASIDE``
    with the reason.
    """
    off = patch.off_reason()
    if off is not None:
        return PatchState.OFF, off
    try:
        module = importlib.import_module(patch.module)
    except Exception as exc:
        return PatchState.STOOD_ASIDE, f"{patch.module} cannot be imported: {exc}"
    problem = _problem(patch, module)
    if problem is not None:
        return PatchState.STOOD_ASIDE, problem
    return PatchState.ACTIVE, ""
