"""Sections 2-4: instrumentations, ClStock's targets, library versions."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

from clstock_otel_distro.doctor import compatibility
from clstock_otel_distro.doctor._common import (
    _FALLBACK_DATA_PROVIDER_METHODS,
    _FALLBACK_PREDICTOR_METHODS,
    _LIBRARIES,
    _OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
    _OUR_PACKAGE,
    _OWN_INSTRUMENTORS,
    _dist_label,
    _entry_points,
    _error,
    _instrumentor_constant,
    _quietly_import,
    _quietly_load,
)
from clstock_otel_distro.doctor.findings import Section, Status

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
        left_out = compatibility.left_out_detail(name)
        if left_out is not None:
            section.info(name, f"{left_out} ({where})")
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
        status, subject, detail, advice = _import_instrumentor(entry_point, BaseInstrumentor,
                                                               where)
        known = compatibility.effect(name)
        if known is not None and status is Status.OK:
            detail = f"{detail}; here: {known}"
        section.add(status, subject, detail, advice)


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
    # (kind, variable, default, how serious none found is, what is lost, advice)
    for kind, variable, default, status, lost, advice in (
        ("predictor", OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS, DEFAULT_CLSTOCK_PREDICTOR_TARGETS,
         Status.PROBLEM, "no prediction will be traced",
         "run in the ClStock checkout (or name it with --app-dir), or set "),
        ("data provider", OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS,
         DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS, Status.WARNING,
         "data fetches are traced only through yfinance and curl_cffi", "set "),
    ):
        if not _check_class_targets(section, kind, variable, default, lists[kind], app_dir):
            section.add(status, f"{kind} targets",
                        f"no {kind} class found from {app_dir}: {lost}",
                        f"{advice}{variable}=module:Class")
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

