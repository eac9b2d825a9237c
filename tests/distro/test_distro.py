"""ClStockDistro: environment defaults, and instrumentors that fail without stopping the rest."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from opentelemetry.instrumentation.auto_instrumentation import _load
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from clstock_otel_distro import distro as distro_module
from clstock_otel_distro.distro import ClStockDistro

DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_PYTHON_CONFIGURATOR": "clstock",
    "OTEL_PYTHON_LOG_CORRELATION": "true",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http,database",
    "OTEL_BSP_MAX_QUEUE_SIZE": "8192",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",
    "OTEL_BSP_SCHEDULE_DELAY": "1000",
    "OTEL_BSP_EXPORT_TIMEOUT": "10000",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4096",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": (
        distro_module.DEFAULT_SANITIZE_FIELDS
    ),
}

# A valid value other than the default, per variable (some are checked).
OPERATOR_VALUES = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_PYTHON_CONFIGURATOR": "clstock",
    "OTEL_PYTHON_LOG_CORRELATION": "false",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",
    "OTEL_BSP_MAX_QUEUE_SIZE": "100",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50",
    "OTEL_BSP_SCHEDULE_DELAY": "250",
    "OTEL_BSP_EXPORT_TIMEOUT": "5000",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "unset",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "x-internal-.*",
}


@dataclass
class FakeEntryPoint:
    """Just what load_instrumentor and _load_instrumentors use of an EntryPoint."""

    name: str
    loader: Callable[[], Any]
    group: str = "opentelemetry_instrumentor"
    value: str = "fake:Fake"
    dist: None = None

    def load(self) -> Any:
        return self.loader()


class Recorder:
    """A stand-in instrumentor that records instrument() calls."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def instrument(self, **kwargs: Any) -> None:
        Recorder.calls.append(kwargs)


class RaisesInInstrument:
    def instrument(self, **kwargs: Any) -> None:
        raise RuntimeError("target patched twice")


class RaisesInInit:
    def __init__(self) -> None:
        raise ValueError("bad config")


def _raise_on_load() -> Any:
    raise AttributeError("module has no attribute 'Instrumentor'")


@pytest.fixture(autouse=True)
def _reset_recorder(monkeypatch):
    monkeypatch.setattr(Recorder, "calls", [])


@pytest.mark.parametrize(("name", "value"), sorted(DEFAULTS.items()))
def test_default_set_when_unset(name, value):
    """Each default is set when the variable is unset."""
    ClStockDistro()._configure()
    assert os.environ[name] == value


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_user_value_wins(monkeypatch, name):
    """A valid value the operator set is never overwritten."""
    monkeypatch.setenv(name, OPERATOR_VALUES[name])
    ClStockDistro()._configure()
    assert os.environ[name] == OPERATOR_VALUES[name]


def test_configure_sets_nothing_else():
    """_configure only sets the documented defaults."""
    before = dict(os.environ)
    ClStockDistro().configure()
    added = {k: v for k, v in os.environ.items() if k not in before}
    assert added == DEFAULTS


def test_distro_ran_flag(monkeypatch):
    """_configure records that the distro ran, for the start-up check."""
    monkeypatch.setattr(distro_module, "_distro_ran", False)
    assert not distro_module.distro_ran()
    ClStockDistro()._configure()
    assert distro_module.distro_ran()


@pytest.mark.parametrize(
    ("loader", "reason"),
    [
        (lambda: RaisesInInstrument, "RuntimeError: target patched twice"),
        (lambda: RaisesInInit, "ValueError: bad config"),
        (_raise_on_load, "AttributeError: module has no attribute 'Instrumentor'"),
    ],
)
def test_failing_instrumentor_skipped_with_one_warning(caplog, loader, reason):
    """A raising load/instantiation/instrument() is one warning naming it; the next still loads."""
    caplog.set_level(logging.DEBUG, logger="clstock_otel_distro")
    distro = ClStockDistro()
    distro.load_instrumentor(FakeEntryPoint("broken_lib", loader), skip_dep_check=True)
    distro.load_instrumentor(FakeEntryPoint("good_lib", lambda: Recorder), skip_dep_check=True)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'broken_lib'" in warnings[0].getMessage()
    assert reason in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == 1
    assert Recorder.calls == [{"skip_dep_check": True}]


def test_missing_library_left_to_upstream():
    """ModuleNotFoundError propagates: upstream skips it quietly at debug level."""

    def missing() -> Any:
        raise ModuleNotFoundError("No module named 'curl_cffi'")

    with pytest.raises(ModuleNotFoundError):
        ClStockDistro().load_instrumentor(FakeEntryPoint("curl_cffi", missing))


def test_upstream_loop_continues_after_failure(monkeypatch, caplog):
    """Through upstream's _load_instrumentors, a failing instrumentor no longer aborts the loop."""
    entry_points = {
        "opentelemetry_instrumentor": [
            FakeEntryPoint("first", lambda: RaisesInInstrument),
            FakeEntryPoint("second", lambda: Recorder),
        ],
    }
    monkeypatch.setattr(_load, "entry_points", lambda group: entry_points.get(group, []))
    monkeypatch.setattr(_load, "get_dist_dependency_conflicts", lambda dist: None)
    monkeypatch.setattr(_load._EntryPointDistFinder, "dist_for", lambda self, ep: None)

    _load._load_instrumentors(ClStockDistro())

    assert Recorder.calls == [{"skip_dep_check": True}]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'first'" in m for m in messages)


def test_fastapi_internal_spans_left_out_by_default():
    """The fastapi instrumentor is asked to leave out the ASGI send/receive spans."""
    ClStockDistro().load_instrumentor(FakeEntryPoint("fastapi", lambda: Recorder))
    ClStockDistro().load_instrumentor(FakeEntryPoint("requests", lambda: Recorder))
    assert Recorder.calls == [{"exclude_spans": ["receive", "send"]}, {}]


def test_fastapi_internal_spans_on_request(monkeypatch):
    """OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS=true keeps them."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS", "true")
    ClStockDistro().load_instrumentor(FakeEntryPoint("fastapi", lambda: Recorder))
    assert Recorder.calls == [{}]


_HOOKS = [("OTEL_PYTHON_CLSTOCK_GC_FREEZE", "uvicorn-gc-freeze"),
          ("OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE", "fastapi-route-cache"),
          ("OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH", "asgi-server-path"),
          ("OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS", "fastapi-native-telemetry")]


@pytest.mark.parametrize(("variable", "patch"), _HOOKS)
@pytest.mark.parametrize(("value", "installed"), [(None, True), ("false", False),
                                                  ("FALSE", False), ("true", True)])
def test_performance_hooks_follow_their_variables(patch_installs, monkeypatch, variable, patch,
                                                  value, installed):
    """gc.freeze() at start-up and the FastAPI route cache: on unless set to false."""
    if value is not None:
        monkeypatch.setenv(variable, value)
    ClStockDistro()._configure()
    assert (patch in patch_installs) is installed


@pytest.mark.parametrize(("variable", "patch"), _HOOKS)
def test_performance_hook_bad_value_warns_and_keeps_the_default(patch_installs, monkeypatch,
                                                                caplog, variable, patch):
    monkeypatch.setenv(variable, "later")
    with caplog.at_level(logging.WARNING):
        ClStockDistro()._configure()
    assert patch in patch_installs
    assert f"{variable}='later' is invalid (expected true or false); " \
        "using the default True instead" in caplog.messages


@pytest.mark.parametrize(
    ("provider", "no_op"),
    [
        (lambda: MeterProvider(), True),  # what OTEL_METRICS_EXPORTER=none installs
        (lambda: MeterProvider(metric_readers=[InMemoryMetricReader()]), False),
        (NoOpMeterProvider, False),  # already free: nothing to replace
    ],
    ids=["sdk-without-reader", "sdk-with-reader", "api-no-op"],
)
def test_instrumentors_get_a_no_op_meter_provider_when_nothing_reads_metrics(
        monkeypatch, provider, no_op):
    """A MeterProvider with no reader never exports: its instruments cost for nothing."""
    installed = provider()
    monkeypatch.setattr(distro_module, "get_meter_provider", lambda: installed)
    ClStockDistro().load_instrumentor(FakeEntryPoint("requests", lambda: Recorder))
    [kwargs] = Recorder.calls
    assert isinstance(kwargs.get("meter_provider"), NoOpMeterProvider) is no_op
    if isinstance(installed, MeterProvider):
        installed.shutdown()


def test_an_explicit_meter_provider_is_kept(monkeypatch):
    sdk_provider = MeterProvider()
    monkeypatch.setattr(distro_module, "get_meter_provider", lambda: sdk_provider)
    mine = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ClStockDistro().load_instrumentor(FakeEntryPoint("requests", lambda: Recorder),
                                      meter_provider=mine)
    assert Recorder.calls == [{"meter_provider": mine}]
    sdk_provider.shutdown()
    mine.shutdown()


_HISTOGRAM_TYPE = (
    "from clstock_otel_distro.instrumentors.predictor import ClStockPredictorInstrumentor\n"
    "print(type(ClStockPredictorInstrumentor()._patches[0].group.histogram).__name__)"
)


@pytest.mark.parametrize(("exporter", "no_op"), [("none", True), ("console", False)])
def test_no_metrics_exported_means_no_metrics_recorded(run_instrumented, exporter, no_op):
    """Under opentelemetry-instrument, OTEL_METRICS_EXPORTER=none gives our instrumentors
    no-op instruments; an exporter keeps the SDK's."""
    done = run_instrumented(_HISTOGRAM_TYPE, {"OTEL_TRACES_EXPORTER": "none",
                                              "OTEL_METRICS_EXPORTER": exporter,
                                              "OTEL_METRIC_EXPORT_INTERVAL": "600000"})
    assert done.returncode == 0, done.stderr
    assert (done.stdout.splitlines()[0] == "NoOpHistogram") is no_op, done.stdout
