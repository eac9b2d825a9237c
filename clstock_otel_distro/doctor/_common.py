"""What the doctor's checks share: constants, masking of secrets, quiet imports."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from importlib.metadata import Distribution, EntryPoint

    from clstock_otel_distro.doctor.findings import Report


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
    from clstock_otel_distro import config

    saved = dict(os.environ)
    try:
        config.set_environ(overrides or {})
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


