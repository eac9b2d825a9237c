"""``clstock-otel doctor``: check that a ClStock deployment will be traced, and how.

Run it where ClStock runs (the current directory is the ClStock checkout, as for
``opentelemetry-instrument uvicorn app.main:app``), with the deployment's environment::

    clstock-otel doctor                       # readable report
    clstock-otel doctor --app-dir /srv/clstock --no-network
    clstock-otel doctor --json | jq .problems  # for scripts
    python -m clstock_otel_distro.doctor      # the same, without the console script

It reports, in six sections:

1. the distro and configurator ``opentelemetry-instrument`` will choose, computed as
   ``_load_distro`` / ``_load_configurators`` do (entry point order,
   ``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR``, the chosen distro's defaults);
2. every ``opentelemetry_instrumentor`` entry point: will load, or skipped and why
   (disabled, dependency conflict, import error: each module is actually imported);
3. ClStock's targets: the predictor and data-provider classes and the
   ``OTEL_PYTHON_CLSTOCK_TRACE_METHODS`` entries, imported from the app directory,
   with the methods that will be traced;
4. whether the installed yfinance and curl_cffi are versions our instrumentations support;
5. the effective configuration (every ``OTEL_*`` variable set, plus the defaults the
   distro and configurator add), secrets masked, and every invalid value, found by
   the validators the configurator itself uses;
6. whether the OTLP traces endpoint answers (an empty export over http/protobuf, a
   TCP connect for grpc); ``--no-network`` skips it.

Each finding is marked ✓ (fine), · (information), ! (warning) or ✗ (problem); ASCII
markers are used when stdout cannot encode those. The exit status is 1 when there
is at least one problem, else 0: warnings (an unusual but working setup) and
information (a default target absent from this ClStock layout) keep it 0.

Importing this module is cheap (the standard library only): everything else is
imported when the checks run, so ``clstock-otel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from importlib.metadata import Distribution, EntryPoint

__all__ = [
    "DESCRIPTION",
    "HELP",
    "Finding",
    "Report",
    "Section",
    "Status",
    "add_arguments",
    "diagnose",
    "main",
    "register",
    "run",
]

HELP = "check that this deployment will be traced (distro, instrumentations, config, endpoint)"
DESCRIPTION = (
    "Check a ClStock deployment's OpenTelemetry setup: which distro and configurator "
    "opentelemetry-instrument will choose, which instrumentations load, whether ClStock's "
    "classes and methods are found, library versions, the effective configuration "
    "(secrets masked) and whether the OTLP endpoint answers. Exit status 1 when a "
    "problem is found."
)

_DEFAULT_TIMEOUT = 3.0

# Entry points whose value starts with this are ours.
_OUR_PACKAGE = "clstock_otel_distro."
# Our opentelemetry_instrumentor entry points, by name, and what each traces.
_OWN_INSTRUMENTORS = {
    "clstock_predictor": "ClStock's predictors",
    "clstock_data_provider": "ClStock's data providers",
    "yfinance": "yfinance",
    "curl_cffi": "curl_cffi HTTP requests",
    "clstock_methods": "OTEL_PYTHON_CLSTOCK_TRACE_METHODS",
}

# The instrumentors' method lists and library requirements are read from their
# modules (``_METHODS``, ``_instruments``); these copies are used only when a module
# cannot be imported, and the report says so.
_INSTRUMENTORS_PACKAGE = "clstock_otel_distro.instrumentors"
_FALLBACK_PREDICTOR_METHODS = (
    "calculate_score",
    "get_top_recommendations",
    "predict",
    "predict_score",
    "predict_return_rate",
    "predict_batch",
    "train",
)
_FALLBACK_DATA_PROVIDER_METHODS = ("get_stock_data", "get_multiple_stocks")
_LIBRARIES = (
    ("yfinance", "yfinance", ("yfinance >= 0.2.40",)),
    ("curl_cffi", "curl_cffi", ("curl_cffi >= 0.6",)),
)

# Upstream's names, spelled out so that importing this module imports nothing else.
_OTEL_PYTHON_DISTRO = "OTEL_PYTHON_DISTRO"
_OTEL_PYTHON_CONFIGURATOR = "OTEL_PYTHON_CONFIGURATOR"
_OTEL_PYTHON_DISABLED_INSTRUMENTATIONS = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
_OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
_OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"
_OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"

# Beyond _config.is_secret's markers (HEADERS, TOKEN, KEY, SECRET, PASSWORD).
_EXTRA_SECRET_MARKERS = ("AUTH", "CREDENTIAL")
# URL userinfo: from "://" to the last "@" of the token (greedy, so a password with
# an unencoded "/" or "@" is masked whole).
_USERINFO = re.compile(r"(?<=://)[^\s,'\"<>]*@")
_SHORTEST_MASKED_SECRET = 3
# OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*: lists of header names, not credentials
# (still shown masked, as _config masks any *HEADERS* variable, but not hunted down).
_HEADER_NAME_LISTS = "CAPTURE_HEADERS"


class Status(str, enum.Enum):
    """How a finding counts: only PROBLEM makes the exit status 1."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    PROBLEM = "problem"


_MARKERS = {Status.OK: "✓", Status.INFO: "·", Status.WARNING: "!", Status.PROBLEM: "✗"}
_ASCII_MARKERS = {Status.OK: "+", Status.INFO: "-", Status.WARNING: "!", Status.PROBLEM: "x"}


@dataclass
class Finding:
    """One line of the report: what was checked, what was found, what to do."""

    status: Status
    subject: str
    detail: str = ""
    advice: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "status": self.status.value,
            "subject": self.subject,
            "detail": self.detail,
            "advice": self.advice,
        }


@dataclass
class Section:
    """A titled group of findings."""

    title: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: Status, subject: str, detail: str = "", advice: str = "") -> Finding:
        finding = Finding(status, subject, detail, advice)
        self.findings.append(finding)
        return finding

    def ok(self, subject: str, detail: str = "") -> Finding:
        return self.add(Status.OK, subject, detail)

    def info(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.INFO, subject, detail, advice)

    def warning(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.WARNING, subject, detail, advice)

    def problem(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.PROBLEM, subject, detail, advice)


@dataclass
class Report:
    """Everything the doctor found, in sections; rendered as text or JSON."""

    app_dir: Path
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    @property
    def findings(self) -> list[Finding]:
        return [finding for section in self.sections for finding in section.findings]

    def count(self, status: Status) -> int:
        return sum(finding.status is status for finding in self.findings)

    @property
    def problems(self) -> int:
        return self.count(Status.PROBLEM)

    @property
    def warnings(self) -> int:
        return self.count(Status.WARNING)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def summary(self) -> str:
        return f"{_plural(self.problems, 'problem')}, {_plural(self.warnings, 'warning')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_dir": str(self.app_dir),
            "problems": self.problems,
            "warnings": self.warnings,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "sections": [
                {"title": s.title, "findings": [f.to_dict() for f in s.findings]}
                for s in self.sections
            ],
        }

    def render(self, *, ascii_only: bool = False) -> str:
        markers = _ASCII_MARKERS if ascii_only else _MARKERS
        lines = [f"clstock-otel doctor ({_versions()}), app dir {self.app_dir}"]
        for section in self.sections:
            lines += ["", section.title]
            for finding in section.findings:
                line = f"  {markers[finding.status]} {finding.subject}"
                if finding.detail:
                    line += f": {finding.detail}"
                lines.append(line)
                if finding.advice:
                    lines.append(f"      fix: {finding.advice}")
        legend = ", ".join(
            f"{markers[status]} {status.value}"
            for status in (Status.OK, Status.INFO, Status.WARNING, Status.PROBLEM)
        )
        lines += ["", f"{self.summary()} ({legend}; exit status 1 on a problem)"]
        return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _versions() -> str:
    from clstock_otel_distro.version import __version__

    python = ".".join(map(str, sys.version_info[:3]))
    return f"clstock-otel-distro {__version__}, Python {python}"


# --------------------------------------------------------------------------- secrets


def _is_secret(name: str) -> bool:
    from clstock_otel_distro import config as _config

    upper = name.upper()
    return _config.is_secret(name) or any(marker in upper for marker in _EXTRA_SECRET_MARKERS)


def _mask_userinfo(text: str) -> str:
    from clstock_otel_distro import config as _config

    return _USERINFO.sub(f"{_config.MASK}@", text)


def _display(name: str, value: str) -> str:
    """A variable's value as the report shows it: _config's masking, plus URL credentials."""
    from clstock_otel_distro import config as _config

    if _is_secret(name):
        return _config.MASK
    return _config.display_value(name, _mask_userinfo(value))


class _Redactor:
    """Removes every secret of the environment from text, whatever printed it.

    The findings are built from messages of many origins (our validators, exporter
    errors, import errors of the application): rather than trusting each, the whole
    report goes through this last. It masks URL userinfo, and every value (and each
    header value) of a secret-bearing variable, wherever it appears.
    """

    def __init__(self, environ: dict[str, str]) -> None:
        secrets: set[str] = set()
        for name, value in environ.items():
            for match in _USERINFO.finditer(value):
                userinfo = match.group(0)[:-1]
                secrets.update({userinfo, userinfo.partition(":")[2], unquote(userinfo)})
            if _is_secret(name) and _HEADER_NAME_LISTS not in name.upper():
                secrets.update({value, value.strip()})
                for entry in value.split(","):
                    item = entry.partition("=")[2].strip()
                    secrets.update({entry.strip(), item, unquote(item)})
        self._secrets = sorted(
            (s for s in secrets if len(s) >= _SHORTEST_MASKED_SECRET), key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        from clstock_otel_distro import config as _config

        text = _mask_userinfo(text)
        for secret in self._secrets:
            text = text.replace(secret, _config.MASK)
        return text

    def apply(self, report: Report) -> None:
        for finding in report.findings:
            finding.subject = self(finding.subject)
            finding.detail = self(finding.detail)
            finding.advice = self(finding.advice)


# --------------------------------------------------------------------------- helpers


def _entry_points(group: str) -> list[EntryPoint]:
    """The group's entry points in the order opentelemetry-instrument sees them.

    ``opentelemetry.util._importlib_metadata.entry_points`` caches its first answer
    for the life of the process; this reads ``importlib.metadata`` afresh (same
    order) so the report reflects ``sys.path`` as it is now, app directory included.
    """
    import importlib.metadata

    if sys.version_info >= (3, 10):
        return list(importlib.metadata.entry_points(group=group))
    return list(importlib.metadata.entry_points().get(group, ()))  # pragma: no cover


def _dist_label(dist: Distribution | None) -> str:
    if dist is None:
        return "no distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _app_on_path(app_dir: Path) -> Iterator[None]:
    # opentelemetry-instrument puts the working directory (the app) first on
    # PYTHONPATH: the app's modules, and any metadata in it, come first.
    entry = str(app_dir)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


@contextlib.contextmanager
def _captured_config_warnings() -> Iterator[list[logging.LogRecord]]:
    """The WARNINGs our validators log while the block runs (one per bad value).

    ``_config.warn_invalid`` warns once per (variable, value) per process; a fresh
    "already warned" set for the duration makes every bad value show up here, even
    if the process (a test run) met it before. The records are kept from the stderr
    fallback handler by this handler's presence.
    """
    from clstock_otel_distro import config as _config

    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collect(logging.WARNING)
    loggers = [logging.getLogger(f"{_OUR_PACKAGE}{name}") for name in ("config", "configurator")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with _attribute(_config, "_warned", set()):
            yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextlib.contextmanager
def _attribute(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name = value`` for the duration of the block."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


@contextlib.contextmanager
def _environ(overrides: Mapping[str, str | None] | None = None) -> Iterator[None]:
    """Replace (str) or hide (None) variables; the whole environment is restored after."""
    saved = dict(os.environ)
    try:
        for name, value in (overrides or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def _quietly_import(name: str) -> ModuleType:
    # Application modules may print on import: keep stdout for the report (--json).
    with contextlib.redirect_stdout(sys.stderr):
        return importlib.import_module(name)


def _quietly_load(entry_point: EntryPoint) -> Any:
    with contextlib.redirect_stdout(sys.stderr):
        return entry_point.load()


def _instrumentor_constant(module: str, name: str, fallback: Any) -> tuple[Any, str]:
    """A constant of one of our instrumentor modules, and where it came from."""
    try:
        value = getattr(_quietly_import(f"{_INSTRUMENTORS_PACKAGE}.{module}"), name)
    except Exception as exc:
        return fallback, f"built-in list ({_INSTRUMENTORS_PACKAGE}.{module}.{name}: {_error(exc)})"
    return (tuple(value) if isinstance(value, (dict, list, tuple)) else value), ""


# --------------------------------------------------------------------------- 1. selection


@dataclass
class _Selection:
    distro: Any = None  # the BaseDistro instance opentelemetry-instrument would configure
    ours_distro: bool = False
    # What the distro's configure() changed, and the values it found there before.
    distro_defaults: dict[str, str] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)
    ours_configurator: bool = False


def _choose_distro(section: Section, selection: _Selection) -> None:
    from opentelemetry.instrumentation.distro import BaseDistro

    from clstock_otel_distro.distro import ClStockDistro

    entry_points = _entry_points("opentelemetry_distro")
    requested = os.environ.get(_OTEL_PYTHON_DISTRO)  # read raw, as _load_distro does
    order = ", ".join(ep.name for ep in entry_points) or "none"
    how = (
        f"{_OTEL_PYTHON_DISTRO}={requested!r} picks by name"
        if requested is not None
        else f"{_OTEL_PYTHON_DISTRO} unset: the first one wins"
    )
    context = f"entry points in order: {order}; {how}"
    advice = f"set {_OTEL_PYTHON_DISTRO}=clstock {_OTEL_PYTHON_CONFIGURATOR}=clstock"
    if not any(ep.value.startswith(_OUR_PACKAGE) for ep in entry_points):
        section.problem(
            "distro",
            f"clstock-otel-distro's opentelemetry_distro entry point is not installed "
            f"in this environment ({context})",
            "pip install clstock-otel-distro into the environment ClStock runs in",
        )
    for entry_point in entry_points:
        if requested is not None and requested != entry_point.name:
            continue
        try:
            distro = _quietly_load(entry_point)()
        except Exception as exc:
            section.problem(
                "distro",
                f"{entry_point.value} cannot be loaded ({_error(exc)}): "
                "opentelemetry-instrument would give up on all instrumentation",
                advice,
            )
            return
        if not isinstance(distro, BaseDistro):
            section.info("distro", f"{entry_point.value} is not a distro: skipped")
            continue
        label = f"{entry_point.name} -> {entry_point.value}"
        selection.distro = distro
        if isinstance(distro, ClStockDistro):
            selection.ours_distro = True
            section.ok("distro", f"{label} ({context})")
        else:
            section.problem(
                "distro",
                f"{label} wins, not ClStockDistro: ClStock's defaults are not applied ({context})",
                advice,
            )
        return
    section.problem(
        "distro",
        f"no entry point matches, so opentelemetry-instrument uses its DefaultDistro "
        f"and ClStock's defaults are not applied ({context})",
        advice,
    )


def _apply_distro(section: Section, selection: _Selection) -> None:
    """Record what the chosen distro's ``configure()`` adds to the environment.

    opentelemetry-instrument calls it before the configurator and the instrumentors
    run, and a distro's job there is to set environment defaults (ours, and
    upstream's, only ``os.environ.setdefault``). It runs here in a scratch
    environment, restored afterwards; the configurator and everything after it are
    then checked with those defaults in place, as they would see them.
    """
    from clstock_otel_distro import distro as distro_module

    if selection.distro is None:
        return
    before = dict(os.environ)
    # ClStockDistro's "ran" flag belongs to the start-up check: leave it as it was.
    with _environ(), _attribute(distro_module, "_distro_ran", distro_module._distro_ran):
        try:
            selection.distro.configure()
        except Exception as exc:
            section.problem(
                "distro",
                f"{type(selection.distro).__name__}.configure() fails ({_error(exc)}): "
                "opentelemetry-instrument would give up on all instrumentation",
            )
        after = dict(os.environ)
    selection.distro_defaults = {
        name: value for name, value in after.items() if before.get(name) != value
    }
    # ClStockDistro also replaces a bad value of a variable it gives a default to.
    selection.replaced = {
        name: before[name]
        for name in selection.distro_defaults
        if name in before and before[name].strip()
    }


def _choose_configurator(section: Section, selection: _Selection) -> None:
    from clstock_otel_distro.configurator import ClStockConfigurator

    entry_points = _entry_points("opentelemetry_configurator")
    requested = os.environ.get(_OTEL_PYTHON_CONFIGURATOR)
    order = ", ".join(ep.name for ep in entry_points) or "none"
    if requested is None:
        how = f"{_OTEL_PYTHON_CONFIGURATOR} unset: the first one wins"
    else:
        source = (
            f"{type(selection.distro).__name__}'s default"
            if _OTEL_PYTHON_CONFIGURATOR in selection.distro_defaults
            else "set"
        )
        how = f"{_OTEL_PYTHON_CONFIGURATOR}={requested!r} ({source}) picks by name"
    context = f"entry points in order: {order}; {how}"
    advice = f"set {_OTEL_PYTHON_CONFIGURATOR}=clstock"
    for entry_point in entry_points:
        if requested is not None and requested != entry_point.name:
            continue
        label = f"{entry_point.name} -> {entry_point.value}"
        try:
            configurator = _quietly_load(entry_point)
        except Exception as exc:
            section.problem(
                "configurator",
                f"{label} cannot be loaded ({_error(exc)}): opentelemetry-instrument would "
                "give up on all instrumentation",
                advice,
            )
            return
        if isinstance(configurator, type) and issubclass(configurator, ClStockConfigurator):
            selection.ours_configurator = True
            section.ok("configurator", f"{label} ({context})")
        else:
            section.problem(
                "configurator",
                f"{label} wins, not ClStockConfigurator: the SDK is built without ClStock's "
                f"resource and configuration checks ({context})",
                advice,
            )
        return
    section.problem(
        "configurator",
        f"no configurator runs, so no SDK is set up and nothing is exported ({context})",
        advice,
    )


# --------------------------------------------------------------------------- 2. instrumentors


def _disabled_instrumentations() -> list[str]:
    # Exactly _load_instrumentors' parsing: split on commas, strip each name.
    raw = os.environ.get(_OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)
    return [] if raw is None else [name.strip() for name in raw.split(",")]


def _dist_finder() -> Any:
    try:
        from opentelemetry.instrumentation.auto_instrumentation._load import (
            _EntryPointDistFinder,
        )
    except ImportError:  # pragma: no cover - older/newer upstream layout
        return None
    return _EntryPointDistFinder()


def _check_instrumentors(section: Section) -> None:
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

    entry_points = _entry_points("opentelemetry_instrumentor")
    disabled = _disabled_instrumentations()
    finder = _dist_finder()
    names = {ep.name for ep in entry_points}
    for name, what in _OWN_INSTRUMENTORS.items():
        if not any(ep.name == name and ep.value.startswith(_OUR_PACKAGE) for ep in entry_points):
            section.problem(
                name,
                f"clstock-otel-distro's opentelemetry_instrumentor entry point is not "
                f"registered: {what} will not be traced",
                "reinstall clstock-otel-distro (pip install --force-reinstall clstock-otel-distro)",
            )
    unknown = [name for name in disabled if name and name != "*" and name not in names]
    if unknown:
        section.warning(
            _OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
            f"{', '.join(map(repr, unknown))} match no instrumentation "
            f"(installed: {', '.join(sorted(names)) or 'none'})",
            "check the spelling: names are the entry point names listed below",
        )
    for entry_point in entry_points:
        dist = finder.dist_for(entry_point) if finder else getattr(entry_point, "dist", None)
        name = entry_point.name
        where = f"{entry_point.value}, {_dist_label(dist)}"
        if "*" in disabled or name in disabled:
            section.info(
                name, f"skipped: disabled by {_OTEL_PYTHON_DISABLED_INSTRUMENTATIONS} ({where})"
            )
            continue
        if dist is None:
            section.problem(
                name,
                f"no installed distribution owns this entry point ({where}): "
                "opentelemetry-instrument would fail on it and stop loading instrumentations",
            )
            continue
        conflict = get_dist_dependency_conflicts(dist)
        if conflict is not None:
            if conflict.found or conflict.found_any:
                section.problem(
                    name,
                    f"skipped: dependency conflict: {conflict} ({where})",
                    "install a supported version of the library, or uninstall "
                    f"{dist.metadata['Name']}",
                )
            else:
                section.info(name, f"skipped: library not installed: {conflict} ({where})")
            continue
        section.add(*_import_instrumentor(entry_point, BaseInstrumentor, where))


def _import_instrumentor(
    entry_point: EntryPoint, base: type, where: str
) -> tuple[Status, str, str, str]:
    """Import the entry point as _load_instrumentors would; (status, subject, detail, advice)."""
    name = entry_point.name
    disable = f"or disable it: {_OTEL_PYTHON_DISABLED_INSTRUMENTATIONS}={name}"
    try:
        loaded = _quietly_load(entry_point)
    except ModuleNotFoundError as exc:
        # opentelemetry-instrument takes this for "library not installed" and skips
        # the instrumentation with a debug message only.
        return (
            Status.WARNING,
            name,
            f"skipped: import error: {_error(exc)}; opentelemetry-instrument skips it "
            f"silently ({where})",
            f"install the missing module, {disable}",
        )
    except ImportError as exc:
        return (
            Status.PROBLEM,
            name,
            f"skipped: import error: {_error(exc)} ({where})",
            f"reinstall the package, {disable}",
        )
    except Exception as exc:
        return (
            Status.PROBLEM,
            name,
            f"importing it fails: {_error(exc)} ({where})",
            f"fix the package, {disable}",
        )
    if not (isinstance(loaded, type) and issubclass(loaded, base)):
        return Status.PROBLEM, name, f"not a BaseInstrumentor subclass ({where})", disable
    return Status.OK, name, f"will load ({where})", ""


# --------------------------------------------------------------------------- 3. targets


def _resolve(root: Any, path: str) -> Any:
    # The instrumentors' own lookups, so that the doctor finds exactly what they patch;
    # imported here, not at the top: `clstock-otel --help` must stay cheap.
    from clstock_otel_distro.instrumentors._machinery.patches import resolve

    return resolve(root, path)


def _class_tree(base: type) -> list[type]:
    from clstock_otel_distro.instrumentors._machinery.patches import class_tree

    return class_tree(base)


def _defines(cls: type, name: str) -> bool:
    """Whether the instrumentors would wrap ``cls.name`` (a concrete function it defines)."""
    raw = vars(cls).get(name)
    function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    return inspect.isfunction(function) and not getattr(function, "__isabstractmethod__", False)


@dataclass
class _Imported:
    module: ModuleType | None = None
    absent: bool = False  # the module itself does not exist in this layout
    error: str = ""


def _import_target(name: str) -> _Imported:
    try:
        return _Imported(_quietly_import(name))
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            return _Imported(absent=True, error=f"no module {missing!r}")
        return _Imported(error=_error(exc))
    except (Exception, SystemExit) as exc:
        return _Imported(error=_error(exc))


def _check_class_targets(
    section: Section,
    kind: str,
    variable: str,
    default: str,
    methods: Sequence[str],
    app_dir: Path,
) -> int:
    """Check each configured class; returns how many were found."""
    from clstock_otel_distro import config as _config

    targets = _config.env_targets(variable, default)
    # As the instrumentors decide (configured_targets): a target the operator named
    # is expected to exist; the defaults cover several layouts, most absent from any.
    defaults = [tuple(e.strip().split(":", 1)) for e in default.split(",") if e.strip()]
    named = targets != defaults
    source = variable if named else f"default of {variable}"
    found = 0
    for module_name, qualname in targets:
        subject = f"{kind} {module_name}:{qualname}"
        imported = _import_target(module_name)
        if imported.module is None:
            if imported.absent and not named:
                section.info(subject, f"not in this layout ({imported.error}; {source})")
            elif imported.absent:
                section.problem(
                    subject,
                    f"module not found in {app_dir} ({imported.error})",
                    f"fix {variable}, or run in the ClStock checkout (or name it with --app-dir)",
                )
            else:
                section.problem(subject, f"importing {module_name} fails: {imported.error}")
            continue
        try:
            cls = _resolve(imported.module, qualname)
        except AttributeError:
            status = Status.PROBLEM if named else Status.WARNING
            section.add(
                status,
                subject,
                f"{module_name} has no class {qualname} ({source}): not traced",
                f"fix {variable}" if named else f"name the right class in {variable}",
            )
            continue
        if not isinstance(cls, type):
            section.problem(subject, f"{qualname} is not a class: not traced", f"fix {variable}")
            continue
        found += 1
        tree = _class_tree(cls)
        traced = [name for name in methods if any(_defines(c, name) for c in tree)]
        absent = [name for name in methods if name not in traced]
        subclasses = [c.__qualname__ for c in tree[1:]]
        detail = "found" + (f" with subclasses {', '.join(subclasses)}" if subclasses else "")
        if traced:
            detail += f"; traced: {', '.join(traced)}"
        if absent:
            detail += f"; not defined: {', '.join(absent)}"
        if traced:
            section.ok(subject, detail)
        else:
            section.warning(
                subject,
                f"{detail}: defines none of the traced methods",
                f"name the class that defines them in {variable}",
            )
    return found


def _check_trace_methods(section: Section) -> None:
    from clstock_otel_distro import config as _config
    from clstock_otel_distro.environment_variables import (
        DEFAULT_CLSTOCK_TRACE_METHODS,
        OTEL_PYTHON_CLSTOCK_TRACE_METHODS,
    )

    variable = OTEL_PYTHON_CLSTOCK_TRACE_METHODS
    targets = _config.env_targets(variable, DEFAULT_CLSTOCK_TRACE_METHODS)
    if not targets:
        section.info(variable, "empty: no extra method is traced")
        return
    for module_name, qualname in targets:
        subject = f"{variable} {module_name}:{qualname}"
        advice = f"fix or remove this entry of {variable}"
        imported = _import_target(module_name)
        if imported.module is None:
            section.problem(subject, f"importing {module_name} fails: {imported.error}", advice)
            continue
        owner_path, _, name = qualname.rpartition(".")
        if not owner_path:  # module:function
            if callable(getattr(imported.module, name, None)):
                section.ok(subject, "function found")
            else:
                section.problem(subject, f"{module_name} has no function {name}", advice)
            continue
        try:
            owner = _resolve(imported.module, owner_path)
        except AttributeError:
            section.problem(subject, f"{module_name} has no class {owner_path}", advice)
            continue
        if not isinstance(owner, type):
            section.problem(subject, f"{owner_path} is not a class", advice)
            continue
        tree = _class_tree(owner)
        definers = [c.__qualname__ for c in tree if name in vars(c)]
        if definers:
            section.ok(subject, f"method found (defined on {', '.join(definers)})")
            continue
        inherited = next((c.__qualname__ for c in owner.__mro__ if name in vars(c)), None)
        hint = f" (inherited from {inherited}: name that class)" if inherited else ""
        section.problem(
            subject, f"{owner_path} defines no method {name}{hint}: not traced", advice
        )


def _check_targets(section: Section, app_dir: Path) -> None:
    from clstock_otel_distro.environment_variables import (
        DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS,
        DEFAULT_CLSTOCK_PREDICTOR_TARGETS,
        OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS,
        OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS,
    )

    if not app_dir.is_dir():
        section.problem(
            "app dir", f"{app_dir} is not a directory", "name the ClStock checkout with --app-dir"
        )
        return
    lists = {}
    for kind, module, fallback in (
        ("predictor", "predictor", _FALLBACK_PREDICTOR_METHODS),
        ("data provider", "data_provider", _FALLBACK_DATA_PROVIDER_METHODS),
    ):
        methods, origin = _instrumentor_constant(module, "_METHODS", fallback)
        lists[kind] = methods
        if origin:
            section.info(f"{kind} methods", f"{', '.join(methods)}: {origin}")
    predictors = _check_class_targets(
        section, "predictor", OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS,
        DEFAULT_CLSTOCK_PREDICTOR_TARGETS, lists["predictor"], app_dir,
    )
    if not predictors:
        section.problem(
            "predictor targets",
            f"no predictor class found from {app_dir}: no prediction will be traced",
            f"run in the ClStock checkout (or name it with --app-dir), or set "
            f"{OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS}=module:Class",
        )
    providers = _check_class_targets(
        section, "data provider", OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS,
        DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS, lists["data provider"], app_dir,
    )
    if not providers:
        section.warning(
            "data provider targets",
            f"no data provider class found from {app_dir}: data fetches are traced only "
            "through yfinance and curl_cffi",
            f"set {OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS}=module:Class",
        )
    _check_trace_methods(section)


# --------------------------------------------------------------------------- 4. libraries


def _check_libraries(section: Section) -> None:
    import importlib.metadata

    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    from packaging.requirements import Requirement

    for library, module, fallback in _LIBRARIES:
        requirements, origin = _instrumentor_constant(module, "_instruments", fallback)
        wanted = ", ".join(requirements)
        note = f" ({origin})" if origin else ""
        conflict = get_dependency_conflicts(requirements)
        if conflict is None:
            installed = ", ".join(
                f"{Requirement(r).name} {importlib.metadata.version(Requirement(r).name)}"
                for r in requirements
            )
            section.ok(library, f"{installed} satisfies {wanted}{note}")
        elif conflict.found:
            section.problem(
                library,
                f"{conflict.found} is installed; the instrumentation supports {wanted}{note}, "
                "and opentelemetry-instrument does not check it: it would patch this one",
                f"pip install '{wanted}'",
            )
        else:
            section.info(library, f"not installed: nothing to trace ({wanted}){note}")


# --------------------------------------------------------------------------- 5. configuration


def _check_configuration(section: Section, selection: _Selection) -> Any:
    """List the effective configuration; returns the configurator's plan (None if unavailable)."""
    from clstock_otel_distro import config as _config
    from clstock_otel_distro import configurator
    from clstock_otel_distro.environment_variables import (
        DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
        DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT,
        OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES,
        OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS,
        OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE,
        OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
    )
    from clstock_otel_distro.instrumentors._machinery.telemetry import CODE_DETAILS

    distro = type(selection.distro).__name__
    for name in sorted(n for n in os.environ if n.startswith("OTEL_")):
        if name in selection.replaced:
            source = f"{distro} default, replacing {_display(name, selection.replaced[name])}"
        elif name in selection.distro_defaults:
            source = f"{distro} default"
        else:
            source = "set"
        section.info(f"{name}={_display(name, os.environ[name])}", source)
    if not selection.ours_distro:
        section.info("defaults", "ClStockDistro does not run: its defaults are not applied")
    if not selection.ours_configurator:
        section.info(
            "validation",
            "another configurator runs; the values are checked as ClStockConfigurator would",
        )
    try:
        plan = configurator._plan({})
    except Exception as exc:
        section.problem(
            "configuration",
            f"could not be checked ({_error(exc)}); ClStockConfigurator would fall back "
            "to its defaults (OTLP over http/protobuf to localhost)",
        )
        plan = None
    if plan is not None and selection.ours_configurator:
        for name, value in sorted(plan.lasting_environ.items()):
            section.info(f"{name}={_display(name, value)}", "set by ClStockConfigurator")
        service = (plan.kwargs.get("resource_attributes") or {}).get("service.name")
        if service is not None:
            section.info(
                f"service.name={service!r}",
                f"ClStockConfigurator's default ({_OTEL_SERVICE_NAME} unset)",
            )
    if plan is not None:
        exporters = "; ".join(
            f"{signal}: {', '.join(sorted(found)) or 'none'}"
            for signal, found in plan.exporters.items()
        )
        if exporters:
            section.info("exporters", exporters)
        if plan.exporters and not plan.exporters.get("traces"):
            section.warning("traces", "no trace exporter is configured: spans go nowhere")
    if _config.env_bool(_OTEL_SDK_DISABLED, False):
        section.warning(
            _OTEL_SDK_DISABLED, "the SDK is disabled: nothing is traced or exported"
        )
    # Read later (at exit, by the configurator, by each instrumentor): checked here so
    # that a bad value is reported like the others.
    _config.env_int(
        OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT, DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT, minimum=0
    )
    _config.env_choice(OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES, DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
                       CODE_DETAILS)
    _config.env_bool(OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS, True)
    _config.env_bool(OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE, True)
    return plan


def _check_excluded_urls(section: Section) -> None:
    # Each *_EXCLUDED_URLS list is compiled into one regular expression when its
    # instrumentation starts (opentelemetry.util.http.ExcludeList): a bad pattern
    # makes that instrumentation fail to load.
    # Variables the distro validates itself (falling back to no pattern) are reported
    # from its warning, once; the check here covers the other instrumentations' lists.
    already = {f.subject for f in section.findings}
    for name in sorted(n for n in os.environ if n.endswith("_EXCLUDED_URLS")):
        if f"invalid {name}" in already:
            continue
        patterns = [p.strip() for p in os.environ[name].split(",")] if os.environ[name] else []
        if not patterns:
            continue
        try:
            re.compile("|".join(patterns))
        except re.error as exc:
            section.problem(
                f"invalid {name}",
                f"{name}={_display(name, os.environ[name])} is not a valid regular expression "
                f"({exc}): that instrumentation would not load",
                "escape special characters (e.g. '\\.' for a dot)",
            )


def _report_invalid_values(section: Section, captured: list[logging.LogRecord]) -> None:
    for record in captured:
        message = record.getMessage()
        args = record.args if isinstance(record.args, tuple) else ()
        variable = args[0] if args and isinstance(args[0], str) else "value"
        section.problem(
            f"invalid {variable}", message, "fix the value (the fallback above applies meanwhile)"
        )


# --------------------------------------------------------------------------- 6. endpoint


def _http_traces_url(explicit: str | None) -> str:
    # As the OTLP/HTTP span exporter resolves it: the per-signal variable is the full
    # URL; the general one gets the signal path appended.
    if explicit:
        return explicit
    own = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if own:
        return own
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return f"{base.rstrip('/')}/v1/traces"


def _grpc_target(explicit: str | None) -> str:
    endpoint = (
        explicit
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    )
    parsed = urlsplit(endpoint)
    return parsed.netloc or endpoint  # as the gRPC exporter: host:port


def _env_first(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _http_probe(url: str, timeout: float) -> tuple[bool, str]:
    import base64
    import ssl
    import urllib.error
    import urllib.request

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.util.re import parse_env_headers

    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "clstock-otel-doctor"}
    headers.update(
        parse_env_headers(
            _env_first("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or "",
            liberal=True,
        )
    )
    parts = urlsplit(url)
    if parts.username is not None:
        # The exporter's HTTP client sends URL credentials as basic auth.
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context(
            cafile=_env_first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                              "OTEL_EXPORTER_OTLP_CERTIFICATE")
        )
        cert = _env_first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                          "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        key = _env_first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
        if cert:
            context.load_cert_chain(cert, key)
    body = ExportTraceServiceRequest().SerializeToString()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return False, f"unreachable: {exc.reason}"
    except (OSError, ValueError) as exc:
        return False, f"unreachable: {_error(exc)}"
    return 200 <= status < 300, f"HTTP {status}"


def _tcp_probe(target: str, timeout: float) -> tuple[bool, str]:
    import socket

    parts = urlsplit(f"//{target}")
    try:
        host, port = parts.hostname, parts.port or 443
    except ValueError as exc:
        return False, f"not a host:port target ({exc})"
    if not host:
        return False, "no host"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"unreachable: {_error(exc)}"
    return True, "TCP connection accepted (TLS and authentication not checked)"


def _check_endpoint(section: Section, plan: Any, *, network: bool, timeout: float) -> None:
    from clstock_otel_distro import config as _config

    if not network:
        section.info("OTLP endpoint", "not checked (--no-network)")
        return
    if _config.env_bool(_OTEL_SDK_DISABLED, False):
        section.info("OTLP endpoint", f"not checked ({_OTEL_SDK_DISABLED})")
        return
    if plan is None:
        section.info("OTLP endpoint", "not checked: the exporters could not be determined")
        return
    if not plan.exporters and _config.env_str(_OTEL_CONFIG_FILE):
        section.info("OTLP endpoint", f"not checked: {_OTEL_CONFIG_FILE} decides the exporters")
        return
    exporters = plan.exporters.get("traces", {})
    others = sorted(name for name in exporters if not name.startswith("otlp_proto_"))
    if others:
        section.info("traces exporters", f"{', '.join(others)}: not checked")
    if not any(name.startswith("otlp_proto_") for name in exporters):
        if not others:
            section.info("OTLP endpoint", "not checked: traces are not exported over OTLP")
        return
    with _environ(plan.scoped_environ):
        for name, exporter in sorted(exporters.items()):
            explicit = plan.exporter_args.get(exporter, {}).get("endpoint")
            started = time.perf_counter()
            if name == "otlp_proto_http":
                target = _http_traces_url(explicit)
                what = f"traces over http/protobuf: POST {target}"
                reachable, outcome = _http_probe(target, timeout)
            elif name == "otlp_proto_grpc":
                target = _grpc_target(explicit)
                what = f"traces over grpc: {target}"
                reachable, outcome = _tcp_probe(target, timeout)
            else:
                continue
            elapsed = f"{(time.perf_counter() - started) * 1000:.0f} ms"
            if reachable:
                section.ok(what, f"{outcome} in {elapsed}")
            else:
                section.problem(
                    what,
                    f"{outcome} (after {elapsed}): spans would be dropped",
                    "start the collector (or `clstock-otel collect`), or point "
                    "OTEL_EXPORTER_OTLP_ENDPOINT at one",
                )


# --------------------------------------------------------------------------- entry points


def diagnose(
    app_dir: str | os.PathLike[str] | None = None,
    *,
    network: bool = True,
    timeout: float = _DEFAULT_TIMEOUT,
) -> Report:
    """Run every check against this environment; ``app_dir`` defaults to the working directory.

    The process's environment and ``sys.path`` are left as they were; the application
    modules the checks import stay imported.
    """
    root = Path(app_dir if app_dir is not None else os.getcwd()).resolve()
    report = Report(root)
    selection_section = report.section("Distro and configurator")
    instrumentors = report.section("Instrumentations (opentelemetry_instrumentor entry points)")
    targets = report.section("ClStock targets")
    libraries = report.section("Libraries")
    configuration = report.section("Configuration")
    endpoint = report.section("OTLP endpoint")
    selection = _Selection()
    with _app_on_path(root), _captured_config_warnings() as captured:
        _choose_distro(selection_section, selection)
        _apply_distro(selection_section, selection)
        with _environ(selection.distro_defaults):
            redact = _Redactor(dict(os.environ))
            _choose_configurator(selection_section, selection)
            plan = _check_configuration(configuration, selection)
            _check_instrumentors(instrumentors)
            _check_targets(targets, root)
            _check_libraries(libraries)
            _report_invalid_values(configuration, captured)
            _check_excluded_urls(configuration)
            _check_endpoint(endpoint, plan, network=network, timeout=timeout)
    redact.apply(report)
    return report


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the doctor's options to ``parser`` (and ``handler=run``); returns it."""
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        help="the ClStock checkout the application runs from (default: the current directory)",
    )
    parser.add_argument(
        "--no-network", action="store_true", help="do not contact the OTLP endpoint"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=_DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long the endpoint check waits (default {_DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=run)
    return parser


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``doctor`` command to ``add_subparsers()``'s result; returns its parser."""
    return add_arguments(subparsers.add_parser("doctor", help=HELP, description=DESCRIPTION))


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run the checks for parsed arguments, print the report; returns the exit status."""
    out = stream if stream is not None else sys.stdout
    report = diagnose(args.app_dir, network=not args.no_network, timeout=args.timeout)
    if args.json:
        out.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=True) + "\n")
    else:
        ascii_only = not _can_encode(out, "".join(_MARKERS.values()))
        text = report.render(ascii_only=ascii_only)
        if ascii_only:
            text = text.encode("ascii", "backslashreplace").decode("ascii")
        out.write(text)
    out.flush()
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clstock_otel_distro.doctor [options]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="clstock-otel doctor", description=DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
