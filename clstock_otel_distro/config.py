"""The one place the distro parses environment variables.

Each helper reads one variable and returns a typed value:

- unset, empty or blank: the default, silently (the spec treats empty as unset);
- a good value: the parsed value;
- a bad value: exactly one WARNING on the ``clstock_otel_distro`` logger naming the
  variable and the value, then the default. Values of variables whose name contains
  HEADERS, TOKEN, KEY, SECRET or PASSWORD are shown as ``***``. A (variable, value)
  pair warns once per process, however often it is read.

Usage::

    queue_size = env_int(OTEL_BSP_MAX_QUEUE_SIZE, 2048, minimum=1)
    targets = env_targets(OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS, DEFAULT_PREDICTOR_TARGETS)
    if switch(OTEL_PYTHON_CLSTOCK_GC_FREEZE): ...

The second half holds every default and limit the distro applies to a variable
(:data:`SWITCHES`, the batch processors' settings, the OTLP endpoints), so distro,
configurator and doctor agree on them.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk import environment_variables as sv

from clstock_otel_distro import environment_variables as ev
from clstock_otel_distro._logging import install_stderr_fallback

__all__ = [
    "LOG_BATCH_SETTINGS",
    "MASK",
    "SPAN_BATCH_SETTINGS",
    "SWITCHES",
    "BatchSetting",
    "batch_settings",
    "display_value",
    "env_bool",
    "env_choice",
    "env_float",
    "env_headers",
    "env_int",
    "env_list",
    "env_resource_attributes",
    "env_str",
    "env_targets",
    "env_url",
    "is_secret",
    "resource_attribute_keys",
    "resource_attributes_fix",
    "resource_detectors",
    "set_environ",
    "switch",
    "warn_invalid",
]

_logger = logging.getLogger(__name__)
install_stderr_fallback()

MASK = "***"
_SECRET_MARKERS = ("HEADERS", "TOKEN", "KEY", "SECRET", "PASSWORD")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

# (variable, raw value) pairs already warned about in this process.
_warned: set[tuple[str, str]] = set()

# Header entries as the OTLP exporter spec defines them (W3C baggage-like
# `key=value`), with the SDK's liberal value charset (spaces allowed).
_HEADER_ENTRY = re.compile(
    r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
    r"[ \t]*=[ \t]*"
    r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
)
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_secret(name: str) -> bool:
    """Whether the variable's value may hold a secret and must never be logged."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


def display_value(name: str, value: str) -> str:
    """The value as it may appear in a log line: quoted, or masked for secrets."""
    return MASK if is_secret(name) else repr(value)


def warn_invalid(name: str, value: str, reason: str, fallback: str) -> None:
    """Log the one WARNING for a bad value of ``name``; later calls for the same value are silent.

    ``reason`` and ``fallback`` are shown as given, so they must not contain the
    value of a secret-bearing variable.
    """
    key = (name, value)
    if key in _warned:
        return
    _warned.add(key)
    _logger.warning(
        "%s=%s is invalid (%s); using %s instead",
        name,
        display_value(name, value),
        reason,
        fallback,
    )


def set_environ(changes: Mapping[str, str | None]) -> None:
    """Write each variable (a str) or remove it (None) in ``os.environ``."""
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _describe(default: object, fallback: str | None) -> str:
    if fallback is not None:
        return fallback
    return f"the default {default!r}"


def env_str(name: str, default: str | None = None) -> str | None:
    """The stripped value, or ``default`` when unset or blank."""
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """``true/false`` (also ``1/0``, ``yes/no``, ``on/off``), case-insensitive."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    warn_invalid(name, value, "expected true or false", _describe(default, None))
    return default


def _parse_int(value: str) -> tuple[int | None, str | None]:
    try:
        return int(value, 10), None
    except ValueError:
        return None, "not an integer"


def _parse_float(value: str) -> tuple[float | None, str | None]:
    try:
        number = float(value)
    except ValueError:
        return None, "not a number"
    return (number, None) if math.isfinite(number) else (None, "not a finite number")


def _number(name: str, default: Any, parse: Callable[[str], tuple[Any, str | None]],
            minimum: float | None, maximum: float | None, fallback: str | None) -> Any:
    """The parsed value of ``name`` within ``[minimum, maximum]``, else ``default``."""
    value = _raw(name)
    if value is None:
        return default
    number, problem = parse(value)
    if problem is None and minimum is not None and number < minimum:
        problem = f"below the minimum {minimum}"
    if problem is None and maximum is not None and number > maximum:
        problem = f"above the maximum {maximum}"
    if problem is not None:
        warn_invalid(name, value, problem, _describe(default, fallback))
        return default
    return number


def env_int(
    name: str,
    default: int | None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fallback: str | None = None,
) -> int | None:
    """A base-10 integer within ``[minimum, maximum]``, else ``default``.

    ``fallback`` overrides how the warning describes what is used instead.
    """
    return _number(name, default, _parse_int, minimum, maximum, fallback)


def env_float(
    name: str,
    default: float | None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    fallback: str | None = None,
) -> float | None:
    """A finite number within ``[minimum, maximum]``, else ``default``."""
    return _number(name, default, _parse_float, minimum, maximum, fallback)


def env_list(name: str, default: Sequence[str] = ()) -> list[str]:
    """Comma-separated entries, stripped, empty ones dropped; ``default`` when unset."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def env_choice(
    name: str,
    default: str | None,
    choices: Iterable[str],
    *,
    fallback: str | None = None,
) -> str | None:
    """One of ``choices`` (matched case-insensitively, returned as spelled there)."""
    value = _raw(name)
    if value is None:
        return default
    by_lower = {choice.lower(): choice for choice in choices}
    choice = by_lower.get(value.lower())
    if choice is None:
        reason = "expected one of " + ", ".join(sorted(by_lower.values()))
        warn_invalid(name, value, reason, _describe(default, fallback))
        return default
    return choice


def env_url(name: str, default: str | None, *, fallback: str | None = None) -> str | None:
    """An ``http(s)://host[:port][/path]`` URL, else ``default``."""
    value = _raw(name)
    if value is None:
        return default
    problem = None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        problem = "not a valid URL"
    else:
        if parts.scheme.lower() not in ("http", "https"):
            problem = "not an http:// or https:// URL"
        elif not parts.hostname:
            problem = "the URL has no host"
    if problem:
        warn_invalid(name, value, problem, _describe(default, fallback))
        return default
    return value


def env_headers(name: str) -> str | None:
    """The well-formed ``key=value`` entries of an OTLP headers variable; None when unset.

    Malformed entries are dropped with one warning that says which entries (by
    position) are wrong, never what they contain: header values are credentials.
    When every entry is well formed the value is returned unchanged.
    """
    value = _raw(name)
    if value is None:
        return None
    entries = [entry.strip() for entry in value.split(",")]
    entries = [entry for entry in entries if entry]
    good = [entry for entry in entries if _HEADER_ENTRY.fullmatch(entry)]
    if len(good) == len(entries):
        return value
    bad_positions = [str(i) for i, entry in enumerate(entries, 1) if entry not in good]
    reason = (
        f"entry {', '.join(bad_positions)} of {len(entries)} is not a key=value pair"
        if len(bad_positions) == 1
        else f"entries {', '.join(bad_positions)} of {len(entries)} are not key=value pairs"
    )
    kept = f"the {len(good)} well-formed entries" if good else "no headers"
    warn_invalid(name, value, reason, kept)
    return ",".join(good)


def _resource_entry_problem(entry: str) -> str | None:
    # What the SDK's OTELResourceDetector and BoundedAttributes reject (each with a
    # log line of their own, every time a resource is built).
    key, sep, _ = entry.partition("=")
    if not sep:
        return "no '='"
    if not key.strip():
        return "an empty key"
    return None


def env_resource_attributes(name: str = sv.OTEL_RESOURCE_ATTRIBUTES) -> str | None:
    """The well-formed ``key=value`` entries of ``OTEL_RESOURCE_ATTRIBUTES``; None when unset.

    Parsed as the SDK parses it (entries split on ``,``, then on the first ``=``; the
    key stripped; the value stripped and percent-decoded, possibly empty). An entry
    without ``=`` or with an empty key is dropped, with one warning naming the
    variable, the value and those entries; empty entries (``a=1,,b=2``) are ignored.
    When every entry is well formed the value is returned unchanged; when none is,
    the empty string.
    """
    value = _raw(name)
    if value is None:
        return None
    entries = [entry for entry in value.split(",") if entry.strip()]
    problems = [(entry, _resource_entry_problem(entry)) for entry in entries]
    bad = [f"{entry.strip()!r} ({problem})" for entry, problem in problems if problem]
    if not bad:
        return value
    good = [entry.strip() for entry, problem in problems if problem is None]
    reason = ("malformed entries " if len(bad) > 1 else "malformed entry ") + ", ".join(bad) \
        + "; expected key=value"
    warn_invalid(name, value, reason, "the other entries" if good else "no attributes from it")
    return ",".join(good)


def resource_attributes_fix() -> dict[str, str | None]:
    """What :func:`set_environ` must change so the SDK reads only well-formed
    ``OTEL_RESOURCE_ATTRIBUTES`` entries: nothing, the cleaned value, or its removal."""
    cleaned = env_resource_attributes()
    if cleaned is None or cleaned == _raw(sv.OTEL_RESOURCE_ATTRIBUTES):
        return {}
    return {sv.OTEL_RESOURCE_ATTRIBUTES: cleaned or None}


def resource_attribute_keys(name: str = sv.OTEL_RESOURCE_ATTRIBUTES) -> set[str]:
    """The keys ``OTEL_RESOURCE_ATTRIBUTES`` gives a non-empty value (malformed entries aside)."""
    keys = set()
    for entry in (env_resource_attributes(name) or "").split(","):
        key, sep, value = entry.partition("=")
        if sep and key.strip() and unquote(value.strip()):
            keys.add(key.strip())
    return keys


def _parse_target(entry: str) -> tuple[str, str] | None:
    module, sep, qualname = entry.partition(":")
    module, qualname = module.strip(), qualname.strip()
    if not sep or not _DOTTED_NAME.fullmatch(module) or not _DOTTED_NAME.fullmatch(qualname):
        return None
    return module, qualname


def env_targets(name: str, default: str) -> list[tuple[str, str]]:
    """Comma-separated ``module:Qualified.name`` entries as ``(module, qualname)`` pairs.

    Malformed entries are skipped with one warning and the rest apply; when no
    entry is usable the ``default`` (same format) applies.
    """
    default_targets = [t for t in map(_parse_target, default.split(",")) if t]
    value = _raw(name)
    if value is None:
        return default_targets
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    targets: list[tuple[str, str]] = []
    bad: list[str] = []
    for entry in entries:
        target = _parse_target(entry)
        if target is None:
            bad.append(entry)
        elif target not in targets:
            targets.append(target)
    if bad:
        reason = "malformed " + ", ".join(map(repr, bad)) + "; expected module:Qualified.name"
        if targets:
            warn_invalid(name, value, reason, "the other entries")
        else:
            warn_invalid(name, value, reason, f"the default {default!r}")
            return default_targets
    return targets


# --------------------------------------------------------------------------------------
# The distro's own switches, and the standard variables the distro defaults or bounds.
# Distro, configurator, instrumentors and doctor read them through these, so each
# default and each limit is written once.
# --------------------------------------------------------------------------------------

SWITCHES: dict[str, bool] = {
    ev.OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS: ev.DEFAULT_CLSTOCK_ASGI_INTERNAL_SPANS,
    ev.OTEL_PYTHON_CLSTOCK_GC_FREEZE: ev.DEFAULT_CLSTOCK_GC_FREEZE,
    ev.OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS: ev.DEFAULT_CLSTOCK_DEFER_UNSAMPLED_DURATIONS,
    ev.OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE: ev.DEFAULT_CLSTOCK_FASTAPI_ROUTE_CACHE,
    ev.OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS: ev.DEFAULT_CLSTOCK_FASTAPI_NATIVE_BYPASS,
    ev.OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH: ev.DEFAULT_CLSTOCK_ASGI_FAST_PATH,
    ev.OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE: ev.DEFAULT_CLSTOCK_OTLP_ATTRIBUTE_CACHE,
    ev.OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE: ev.DEFAULT_CLSTOCK_RESOURCE_HASH_CACHE,
    ev.OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE: ev.DEFAULT_CLSTOCK_METRIC_RECORD_CACHE,
    ev.OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS: ev.DEFAULT_CLSTOCK_CLICK_IN_SERVERS,
    ev.OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS: ev.DEFAULT_CLSTOCK_SQLITE3_SPANS,
    ev.OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT: ev.DEFAULT_CLSTOCK_DURABLE_EXPORT,
    ev.OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3: ev.DEFAULT_CLSTOCK_OTLP_URLLIB3,
}
"""Every boolean variable of the distro, with its default."""


def switch(name: str) -> bool:
    """The value of one of :data:`SWITCHES`, its default when unset or bad (one warning)."""
    return env_bool(name, SWITCHES[name])


DEFAULT_OTLP_PROTOCOL = "http/protobuf"
DEFAULT_OTLP_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
"""The OTLP exporters' endpoints when none is configured, by protocol."""

# Sizes and durations beyond these are typos (or would overflow a deque or a thread
# wait), not settings.
MAX_QUEUE_SIZE = 1_000_000
MAX_BATCH_MILLIS = 3_600_000


@dataclass(frozen=True)
class BatchSetting:
    """One variable of a batch processor (spans or log records)."""

    name: str
    argument: str
    """The processor's keyword argument."""
    spec_default: int
    """What the SDK uses when the variable is unset."""
    default: int | None
    """What the distro sets when it is unset (None: the spec's)."""
    minimum: int
    maximum: int


DEFAULT_BSP_MAX_QUEUE_SIZE = 8192
DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_BSP_SCHEDULE_DELAY = 1000
DEFAULT_BSP_EXPORT_TIMEOUT = 10000

SPAN_BATCH_SETTINGS = (
    BatchSetting(sv.OTEL_BSP_SCHEDULE_DELAY, "schedule_delay_millis", 5000,
                 DEFAULT_BSP_SCHEDULE_DELAY, 1, MAX_BATCH_MILLIS),
    BatchSetting(sv.OTEL_BSP_MAX_QUEUE_SIZE, "max_queue_size", 2048,
                 DEFAULT_BSP_MAX_QUEUE_SIZE, 1, MAX_QUEUE_SIZE),
    BatchSetting(sv.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "max_export_batch_size", 512,
                 DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE, 1, MAX_QUEUE_SIZE),
    BatchSetting(sv.OTEL_BSP_EXPORT_TIMEOUT, "export_timeout_millis", 30000,
                 DEFAULT_BSP_EXPORT_TIMEOUT, 0, MAX_BATCH_MILLIS),
)
LOG_BATCH_SETTINGS = (
    BatchSetting(sv.OTEL_BLRP_SCHEDULE_DELAY, "schedule_delay_millis", 1000, None, 1,
                 MAX_BATCH_MILLIS),
    BatchSetting(sv.OTEL_BLRP_MAX_QUEUE_SIZE, "max_queue_size", 2048, None, 1, MAX_QUEUE_SIZE),
    BatchSetting(sv.OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "max_export_batch_size", 512, None, 1,
                 MAX_QUEUE_SIZE),
    BatchSetting(sv.OTEL_BLRP_EXPORT_TIMEOUT, "export_timeout_millis", 30000, None, 0,
                 MAX_BATCH_MILLIS),
)


def batch_settings(settings: Sequence[BatchSetting]) -> dict[str, int]:
    """Explicit processor arguments for the variables that are set, validated.

    A bad value warns once and the processor gets the SDK's default instead (with
    the distro, a bad value never gets this far: it already got the distro's); a batch
    larger than the queue (the SDK raises for it) is cut to the queue's size.
    """
    values: dict[str, int] = {}
    by_argument = {setting.argument: setting for setting in settings}
    for setting in settings:
        fallback = setting.spec_default
        value = env_int(setting.name, None, minimum=setting.minimum, maximum=setting.maximum,
                        fallback=f"the default {fallback}")
        if _raw(setting.name) is not None:
            values[setting.argument] = fallback if value is None else value
    queue_setting = by_argument["max_queue_size"]
    batch_setting = by_argument["max_export_batch_size"]
    queue = values.get("max_queue_size", queue_setting.spec_default)
    batch = values.get("max_export_batch_size", batch_setting.spec_default)
    if batch > queue:
        if "max_export_batch_size" in values:
            warn_invalid(batch_setting.name, _raw(batch_setting.name) or "",
                         f"larger than {queue_setting.name}={queue}", str(queue))
        values["max_export_batch_size"] = queue
    return values


def resource_detectors(available: Iterable[str]) -> list[str]:
    """``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` without the names no detector has.

    The unknown names warn once (the SDK would log a traceback for each); ``*``
    (every detector) is kept.
    """
    known = set(available)
    selected = env_list(sv.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS)
    unknown = [name for name in selected if name != "*" and name not in known]
    if unknown:
        warn_invalid(
            sv.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
            _raw(sv.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS) or "",
            f"unknown resource detector {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(sorted(known))}",
            "the other detectors",
        )
    return [name for name in selected if name not in unknown]
