"""The environment-variable parsers: good, empty, garbage, out-of-range, dedup, masking."""

from __future__ import annotations

import logging

import pytest

from clstock_otel_distro import _logging
from clstock_otel_distro import config as _config
from clstock_otel_distro.config import (
    env_bool,
    env_choice,
    env_float,
    env_headers,
    env_int,
    env_list,
    env_str,
    env_targets,
    env_url,
)

VAR = "OTEL_PYTHON_CLSTOCK_TEST_SETTING"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("clstock_otel_distro")
    ]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="clstock_otel_distro")


def test_env_str_unset_blank_and_value(monkeypatch, caplog):
    """Unset and blank give the default; a value is stripped."""
    assert env_str(VAR, "dflt") == "dflt"
    monkeypatch.setenv(VAR, "   ")
    assert env_str(VAR, "dflt") == "dflt"
    monkeypatch.setenv(VAR, "  value ")
    assert env_str(VAR) == "value"
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("on", True), ("false", False), ("No", False)],
)
def test_env_bool_accepts_spellings(monkeypatch, caplog, raw, expected):
    """true/false and their usual spellings parse without a warning."""
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, not expected) is expected
    assert _warnings(caplog) == []


def test_env_bool_garbage_warns_and_defaults(monkeypatch, caplog):
    """A non-boolean warns once with variable and value, then the default applies."""
    monkeypatch.setenv(VAR, "maybe")
    assert env_bool(VAR, True) is True
    (message,) = _warnings(caplog)
    assert VAR in message
    assert "'maybe'" in message
    assert "True" in message


def test_env_int_good_and_empty(monkeypatch, caplog):
    """A base-10 integer parses; empty gives the default silently."""
    monkeypatch.setenv(VAR, " 42 ")
    assert env_int(VAR, 7, minimum=1) == 42
    monkeypatch.setenv(VAR, "")
    assert env_int(VAR, 7) == 7
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "not an integer"),
        ("5.0", "not an integer"),
        ("0x10", "not an integer"),
        ("-3", "below the minimum 1"),
        ("10" + "0" * 30, "above the maximum 1000"),
    ],
)
def test_env_int_bad_values(monkeypatch, caplog, raw, reason):
    """Garbage, negative and huge integers warn with the reason and fall back."""
    monkeypatch.setenv(VAR, raw)
    assert env_int(VAR, 7, minimum=1, maximum=1000) == 7
    (message,) = _warnings(caplog)
    assert f"{VAR}={raw!r}" in message
    assert reason in message
    assert "the default 7" in message


def test_env_int_fallback_text(monkeypatch, caplog):
    """``fallback`` replaces the default's description in the warning."""
    monkeypatch.setenv(VAR, "x")
    assert env_int(VAR, None, fallback="the SDK default") is None
    assert "using the SDK default instead" in _warnings(caplog)[0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("half", "not a number"),
        ("nan", "not a finite number"),
        ("1e400", "not a finite number"),
        ("-0.5", "below the minimum 0.0"),
        ("1.5", "above the maximum 1.0"),
    ],
)
def test_env_float_bad_values(monkeypatch, caplog, raw, reason):
    """Non-numbers, non-finite and out-of-range floats warn and fall back."""
    monkeypatch.setenv(VAR, raw)
    assert env_float(VAR, 1.0, minimum=0.0, maximum=1.0) == 1.0
    (message,) = _warnings(caplog)
    assert f"{VAR}={raw!r}" in message
    assert reason in message


def test_env_float_good(monkeypatch, caplog):
    """A number inside the range parses, bounds included."""
    monkeypatch.setenv(VAR, "0.25")
    assert env_float(VAR, 1.0, minimum=0.0, maximum=1.0) == 0.25
    monkeypatch.setenv(VAR, "1")
    assert env_float(VAR, 0.5, minimum=0.0, maximum=1.0) == 1.0
    assert _warnings(caplog) == []


def test_env_list_strips_and_drops_empties(monkeypatch, caplog):
    """Entries are stripped, empty ones dropped; unset gives the default."""
    assert env_list(VAR, ("a",)) == ["a"]
    monkeypatch.setenv(VAR, " x, ,y ,,z")
    assert env_list(VAR) == ["x", "y", "z"]
    monkeypatch.setenv(VAR, " , ")
    assert env_list(VAR, ("d",)) == []
    assert _warnings(caplog) == []


def test_env_choice_case_insensitive(monkeypatch, caplog):
    """A choice matches case-insensitively and comes back as spelled in choices."""
    monkeypatch.setenv(VAR, "HTTP/Protobuf")
    assert env_choice(VAR, "grpc", ("grpc", "http/protobuf")) == "http/protobuf"
    assert _warnings(caplog) == []


def test_env_choice_garbage_lists_choices(monkeypatch, caplog):
    """An unknown choice warns listing the valid ones, then the default applies."""
    monkeypatch.setenv(VAR, "http/json")
    assert env_choice(VAR, "grpc", ("grpc", "http/protobuf")) == "grpc"
    (message,) = _warnings(caplog)
    assert "'http/json'" in message
    assert "expected one of grpc, http/protobuf" in message


@pytest.mark.parametrize(
    "raw", ["http://collector:4318", "https://otel.example.com/v1/traces", "http://[::1]:4317"]
)
def test_env_url_good(monkeypatch, caplog, raw):
    """http(s) URLs with a host are accepted as written."""
    monkeypatch.setenv(VAR, raw)
    assert env_url(VAR, None) == raw
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("localhost:4318", "not an http:// or https:// URL"),
        ("ftp://collector", "not an http:// or https:// URL"),
        ("http://", "the URL has no host"),
        ("http://collector:port", "not a valid URL"),
        ("http://collector:99999", "not a valid URL"),
    ],
)
def test_env_url_bad(monkeypatch, caplog, raw, reason):
    """Schemeless, non-http, hostless and bad-port URLs warn and fall back."""
    monkeypatch.setenv(VAR, raw)
    assert env_url(VAR, "http://localhost:4318") == "http://localhost:4318"
    (message,) = _warnings(caplog)
    assert reason in message


def test_env_headers_good_unchanged(monkeypatch, caplog):
    """Well-formed headers come back exactly as set."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc, x-tenant=clstock")
    assert env_headers("OTEL_EXPORTER_OTLP_HEADERS") == "api-key=abc, x-tenant=clstock"
    assert env_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS") is None
    assert _warnings(caplog) == []


def test_env_headers_malformed_masked(monkeypatch, caplog):
    """Malformed entries are dropped; the warning names the variable and never shows a value."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=topsecret1,Bearer topsecret2")
    assert env_headers("OTEL_EXPORTER_OTLP_HEADERS") == "api-key=topsecret1"
    (message,) = _warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_HEADERS=***" in message
    assert "entry 2 of 2" in message
    assert "topsecret" not in caplog.text


def test_env_headers_all_malformed(monkeypatch, caplog):
    """With no well-formed entry the result is empty: no headers."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "garbage,more garbage")
    assert env_headers("OTEL_EXPORTER_OTLP_HEADERS") == ""
    assert "entries 1, 2 of 2" in _warnings(caplog)[0]


DEFAULT_TARGETS = "models.predictor:StockPredictor,data.stock_data:StockDataProvider"


def test_env_targets_default_and_good(monkeypatch, caplog):
    """Unset gives the parsed default; good entries parse, duplicates once."""
    assert env_targets(VAR, DEFAULT_TARGETS) == [
        ("models.predictor", "StockPredictor"),
        ("data.stock_data", "StockDataProvider"),
    ]
    monkeypatch.setenv(VAR, "a.b:C.method, a.b:C.method ,pkg:func")
    assert env_targets(VAR, DEFAULT_TARGETS) == [("a.b", "C.method"), ("pkg", "func")]
    assert _warnings(caplog) == []


def test_env_targets_malformed_entries_skipped(monkeypatch, caplog):
    """Malformed entries are skipped with one warning; the rest apply."""
    monkeypatch.setenv(VAR, "a.b:C.m,no_colon,x:y:z,1bad:C,ok:f")
    assert env_targets(VAR, DEFAULT_TARGETS) == [("a.b", "C.m"), ("ok", "f")]
    (message,) = _warnings(caplog)
    assert "'no_colon'" in message
    assert "'x:y:z'" in message
    assert "'1bad:C'" in message
    assert "the other entries" in message


def test_env_targets_all_malformed_uses_default(monkeypatch, caplog):
    """When no entry is usable the default targets apply."""
    monkeypatch.setenv(VAR, "garbage")
    assert env_targets(VAR, DEFAULT_TARGETS) == env_targets("UNSET_" + VAR, DEFAULT_TARGETS)
    assert "the default" in _warnings(caplog)[0]


def test_env_targets_empty_default(monkeypatch):
    """An empty default parses to no targets."""
    assert env_targets(VAR, "") == []


def test_warning_deduplicated_per_value(monkeypatch, caplog):
    """The same bad value read twice warns once; a different bad value warns again."""
    monkeypatch.setenv(VAR, "abc")
    env_int(VAR, 1)
    env_int(VAR, 1)
    assert len(_warnings(caplog)) == 1
    monkeypatch.setenv(VAR, "def")
    env_int(VAR, 1)
    assert len(_warnings(caplog)) == 2


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", True),
        ("OTEL_PYTHON_API_TOKEN", True),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", True),
        ("MY_SECRET", True),
        ("DB_PASSWORD", True),
        ("OTEL_BSP_MAX_QUEUE_SIZE", False),
    ],
)
def test_secret_variables_masked(monkeypatch, caplog, name, secret):
    """Values of HEADERS/TOKEN/KEY/SECRET/PASSWORD variables never reach the log."""
    monkeypatch.setenv(name, "hunter2")
    env_int(name, 1)
    (message,) = _warnings(caplog)
    assert name in message
    assert ("hunter2" in caplog.text) is not secret
    assert ("=***" in message) is secret


def test_stderr_fallback_when_only_opentelemetry_handlers(monkeypatch, capsys):
    """With only an OpenTelemetry handler in the way, our warnings still reach stderr."""

    class BridgeHandler(logging.Handler):
        def emit(self, record):
            pass

    BridgeHandler.__module__ = "opentelemetry.sdk._logs"
    logger = logging.getLogger("clstock_otel_distro._test_visibility")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "handlers", [BridgeHandler(), _logging._handler])
    logger.warning("visible %s", "warning")
    assert (
        "clstock_otel_distro._test_visibility WARNING: visible warning" in capsys.readouterr().err
    )

    monkeypatch.setattr(logger, "handlers", [logging.NullHandler(), _logging._handler])
    logger.warning("application handles it")
    assert "application handles it" not in capsys.readouterr().err


def test_warn_invalid_uses_package_logger(monkeypatch, caplog):
    """Warnings come from a logger under clstock_otel_distro."""
    _config.warn_invalid(VAR, "v", "bad", "x")
    assert [r.name for r in caplog.records] == ["clstock_otel_distro.config"]
