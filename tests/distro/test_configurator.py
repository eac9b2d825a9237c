"""ClStockConfigurator: resource, exporters, and one warning plus a fallback for each bad value.

Most tests inspect the plan the configurator hands to the SDK and what the SDK's own
helpers build from it (exporter classes, Resource), without installing global
providers; the end-to-end ones run ``opentelemetry-instrument`` in a subprocess.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from clstock_otel_distro import configurator
from clstock_otel_distro.configurator import _defaults_plan, _environ_overrides, _Plan, _plan
from clstock_otel_distro.version import __version__

SPAN_CODE = """
from opentelemetry import trace
with trace.get_tracer("test").start_as_current_span("clstock-span"):
    pass
print("APP-RAN")
"""


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="clstock_otel_distro")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("clstock_otel_distro")
    ]


def _sdk_exporters(plan: _Plan) -> tuple[dict, dict, dict]:
    """The exporter classes the SDK resolves from the plan (raises like the SDK would)."""
    with _environ_overrides({**plan.lasting_environ, **plan.scoped_environ}):
        return _import_exporters(
            _get_exporter_names("traces"),
            _get_exporter_names("metrics"),
            _get_exporter_names("logs"),
        )


def _resource(plan: _Plan) -> Resource:
    """The Resource the SDK builds from the plan."""
    with _environ_overrides({**plan.lasting_environ, **plan.scoped_environ}):
        return Resource.create(plan.kwargs["resource_attributes"])


# --- resource -------------------------------------------------------------------


def test_service_name_defaults_to_clstock():
    """Without OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, service.name is clstock."""
    assert _resource(_plan({})).attributes["service.name"] == "clstock"


def test_service_name_from_otel_service_name(monkeypatch):
    """OTEL_SERVICE_NAME wins over our default."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "clstock-api")
    plan = _plan({})
    assert "service.name" not in plan.kwargs["resource_attributes"]
    assert _resource(plan).attributes["service.name"] == "clstock-api"


def test_service_name_from_resource_attributes(monkeypatch):
    """service.name in OTEL_RESOURCE_ATTRIBUTES wins over our default."""
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod, service.name=batch"
    )
    resource = _resource(_plan({}))
    assert resource.attributes["service.name"] == "batch"
    assert resource.attributes["deployment.environment"] == "prod"


def test_empty_service_name_attribute_gets_default(monkeypatch):
    """An empty service.name= in OTEL_RESOURCE_ATTRIBUTES does not count as set."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=")
    assert _resource(_plan({})).attributes["service.name"] == "clstock"


def test_telemetry_distro_attributes():
    """telemetry.distro.name/version name this distro; auto version passes through."""
    attributes = _resource(_plan({"auto_instrumentation_version": "0.66b1"})).attributes
    assert attributes["telemetry.distro.name"] == "clstock-otel-distro"
    assert attributes["telemetry.distro.version"] == __version__
    assert attributes["telemetry.sdk.language"] == "python"


def test_process_os_host_attributes_on_by_default():
    """process.*, os.* and host.* attributes are detected without any setting."""
    plan = _plan({})
    assert plan.lasting_environ == {"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process,os,host"}
    attributes = _resource(plan).attributes
    assert attributes["process.pid"] == os.getpid()
    assert attributes["process.runtime.name"] == "cpython"
    assert attributes["os.type"]
    assert attributes["host.name"]
    # The SDK excludes command arguments (they may hold secrets) by default.
    assert "process.command_args" not in attributes


def test_user_detectors_kept_and_ours_added(monkeypatch):
    """User-selected detectors stay (after ours, so they take precedence)."""
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "otel,host")
    plan = _plan({})
    assert plan.lasting_environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] == "process,os,host,otel"


def test_unknown_detector_warned_and_dropped(monkeypatch, caplog):
    """An unknown detector name is one warning and is dropped; the rest stay."""
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "os,azure_vm")
    plan = _plan({})
    (message,) = _warnings(caplog)
    assert "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS='os,azure_vm'" in message
    assert "'azure_vm'" in message
    assert plan.lasting_environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] == "process,os,host"


def test_service_instance_id_is_uuid4():
    """service.instance.id is a uuid4 for the process."""
    value = _resource(_plan({})).attributes["service.instance.id"]
    assert uuid.UUID(value).version == 4


def test_service_instance_id_from_user_wins(monkeypatch):
    """A service.instance.id from OTEL_RESOURCE_ATTRIBUTES is kept."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7")
    assert _resource(_plan({})).attributes["service.instance.id"] == "pod-7"


# --- good configurations are left alone ------------------------------------------


def test_valid_configuration_untouched(monkeypatch, caplog):
    """A valid configuration gives no warning and changes no variable."""
    for name, value in {
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc,x-tenant=clstock",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
        "OTEL_METRIC_EXPORT_INTERVAL": "15000",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process,os,host",
    }.items():
        monkeypatch.setenv(name, value)
    plan = _plan({})
    assert _warnings(caplog) == []
    assert plan.scoped_environ == {}
    assert plan.lasting_environ == {}
    assert "exporter_args_map" not in plan.kwargs or plan.kwargs["exporter_args_map"] == {}
    assert plan.kwargs["sampler"].get_description().startswith("ParentBased{root:TraceIdRatioBased")
    assert plan.kwargs["export_span_processor"].settings == {"max_queue_size": 4096}
    traces, metrics, logs = _sdk_exporters(plan)
    assert set(traces) == {"otlp_proto_grpc", "console"}
    assert set(metrics) == {"otlp_proto_http"}
    assert set(logs) == {"console"}


def test_unset_configuration_is_sdk_default(caplog):
    """With nothing set the SDK gets no exporters, no sampler and no variable changes."""
    plan = _plan({})
    assert plan.exporters == {"traces": {}, "metrics": {}, "logs": {}}
    assert "sampler" not in plan.kwargs
    assert plan.scoped_environ == {}
    assert plan.kwargs["export_span_processor"].settings == {}
    assert _warnings(caplog) == []


# --- each bad value: one warning naming variable and value, then the fallback ------


def _one_warning(caplog, variable: str, value: str) -> str:
    messages = _warnings(caplog)
    assert len(messages) == 1, messages
    assert f"{variable}={value!r}" in messages[0]
    return messages[0]


def test_unknown_trace_exporter_dropped_others_kept(monkeypatch, caplog):
    """Unknown names are dropped, known ones kept, available names listed."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,jaeger")
    plan = _plan({})
    message = _one_warning(caplog, "OTEL_TRACES_EXPORTER", "console,jaeger")
    assert "'jaeger' is unknown" in message
    assert "available: console, none, otlp," in message
    assert plan.scoped_environ["OTEL_TRACES_EXPORTER"] == "console"
    assert _sdk_exporters(plan)[0] == {"console": ConsoleSpanExporter}


def test_only_unknown_trace_exporters_fall_back_to_otlp(monkeypatch, caplog):
    """With no known name left, traces fall back to otlp (http/protobuf here)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger, OTLP_gRPC")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    plan = _plan({})
    message = _one_warning(caplog, "OTEL_TRACES_EXPORTER", "jaeger, OTLP_gRPC")
    assert "using 'otlp' instead" in message
    assert _sdk_exporters(plan)[0] == {"otlp_proto_http": OTLPSpanExporter}


def test_unknown_metrics_exporter_falls_back_to_otlp(monkeypatch, caplog):
    """An exporter that is not installed (influxdb) falls back to otlp for metrics."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "influxdb")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    plan = _plan({})
    _one_warning(caplog, "OTEL_METRICS_EXPORTER", "influxdb")
    assert _sdk_exporters(plan)[1] == {"otlp_proto_http": OTLPMetricExporter}


def test_unknown_logs_exporter_falls_back_to_none(monkeypatch, caplog):
    """Logs export only on request: only-bad names mean no log exporter."""
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "splunk")
    plan = _plan({})
    assert "using no exporter instead" in _one_warning(caplog, "OTEL_LOGS_EXPORTER", "splunk")
    assert plan.scoped_environ["OTEL_LOGS_EXPORTER"] == "none"
    assert _sdk_exporters(plan)[2] == {}


def test_none_mixed_with_exporters(monkeypatch, caplog):
    """'none' next to real exporters is ignored with a warning (the SDK would raise)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,none")
    plan = _plan({})
    assert "'none' cannot be combined" in _one_warning(
        caplog, "OTEL_TRACES_EXPORTER", "console,none"
    )
    assert set(_sdk_exporters(plan)[0]) == {"console"}


def test_unknown_sampler_falls_back(monkeypatch, caplog):
    """An unknown sampler warns and becomes parentbased_always_on."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    plan = _plan({})
    message = _one_warning(caplog, "OTEL_TRACES_SAMPLER", "sometimes")
    assert "'parentbased_always_on'" in message
    assert plan.kwargs["sampler"].get_description().startswith("ParentBased{root:AlwaysOnSampler")


@pytest.mark.parametrize("arg", ["abc", "1.5", "-0.1", "nan"])
def test_bad_ratio_sampler_arg_falls_back_to_one(monkeypatch, caplog, arg):
    """A non-numeric or out-of-range ratio warns and samples everything (1.0)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    plan = _plan({})
    _one_warning(caplog, "OTEL_TRACES_SAMPLER_ARG", arg)
    assert plan.kwargs["sampler"].rate == 1.0


def test_ratio_sampler_without_arg_is_silent(monkeypatch, caplog):
    """A ratio sampler with no argument samples everything, without the SDK's warning."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    assert _plan({}).kwargs["sampler"].rate == 1.0
    assert _warnings(caplog) == []


def test_bad_generic_protocol(monkeypatch, caplog):
    """An unsupported OTEL_EXPORTER_OTLP_PROTOCOL becomes http/protobuf."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    plan = _plan({})
    _one_warning(caplog, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    assert _sdk_exporters(plan)[0] == {"otlp_proto_http": OTLPSpanExporter}


@pytest.mark.parametrize("signal", ["TRACES", "METRICS", "LOGS"])
def test_bad_signal_protocol(monkeypatch, caplog, signal):
    """A bad per-signal protocol is ignored: the general one applies, else http/protobuf."""
    monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", "otlp")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "udp")
    plan = _plan({})
    _one_warning(caplog, f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "udp")
    index = ["TRACES", "METRICS", "LOGS"].index(signal)
    assert set(_sdk_exporters(plan)[index]) == {"otlp_proto_http"}


def test_bad_generic_endpoint_uses_default(monkeypatch, caplog):
    """A schemeless OTEL_EXPORTER_OTLP_ENDPOINT warns once; exporters get the default URL."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    plan = _plan({})
    _one_warning(caplog, "OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    args = plan.kwargs["exporter_args_map"]
    assert args[OTLPSpanExporter] == {"endpoint": "http://localhost:4318/v1/traces"}
    assert args[OTLPMetricExporter] == {"endpoint": "http://localhost:4318/v1/metrics"}
    with _environ_overrides(plan.scoped_environ):
        assert OTLPSpanExporter(**args[OTLPSpanExporter])._endpoint.startswith("http://localhost")


def test_bad_signal_endpoint_uses_generic(monkeypatch, caplog):
    """A bad per-signal endpoint falls back to the general endpoint plus the signal path."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces")
    plan = _plan({})
    _one_warning(caplog, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces")
    endpoint = plan.kwargs["exporter_args_map"][OTLPSpanExporter]["endpoint"]
    assert endpoint == "http://collector:4318/v1/traces"


def test_bad_grpc_endpoint_uses_grpc_default(monkeypatch, caplog):
    """For grpc the default endpoint is localhost:4317, without a signal path."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://")
    plan = _plan({})
    _one_warning(caplog, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://")
    (args,) = plan.kwargs["exporter_args_map"].values()
    assert args == {"endpoint": "http://localhost:4317"}


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
)
def test_malformed_headers_masked(monkeypatch, caplog, name):
    """Malformed header entries are dropped with one masked warning; values never logged."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv(name, "authorization=Bearer tok3n,s3cr3t-without-equals")
    plan = _plan({})
    (message,) = _warnings(caplog)
    assert f"{name}=***" in message
    assert "tok3n" not in caplog.text
    assert "s3cr3t" not in caplog.text
    assert plan.scoped_environ[name] == "authorization=Bearer tok3n"
    with _environ_overrides(plan.scoped_environ):
        exporter = OTLPSpanExporter()
    assert exporter._client._headers["authorization"] == "Bearer tok3n"


@pytest.mark.parametrize(
    ("name", "value", "argument", "expected"),
    [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "max_queue_size", 2048),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon", "schedule_delay_millis", 5000),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", "max_export_batch_size", 512),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1e3", "export_timeout_millis", 30000),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", "max_export_batch_size", 2048),
    ],
)
def test_bad_bsp_values(monkeypatch, caplog, name, value, argument, expected):
    """Bad OTEL_BSP_* values warn and the processor gets the default explicitly."""
    monkeypatch.setenv(name, value)
    factory = _plan({}).kwargs["export_span_processor"]
    _one_warning(caplog, name, value)
    assert factory.settings[argument] == expected
    processor = factory(ConsoleSpanExporter())
    assert isinstance(processor, BatchSpanProcessor)
    processor.shutdown()


def test_small_queue_clamps_default_batch(monkeypatch, caplog):
    """A valid queue smaller than the default batch size clamps the batch silently."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    factory = _plan({}).kwargs["export_span_processor"]
    assert factory.settings == {"max_queue_size": 100, "max_export_batch_size": 100}
    assert _warnings(caplog) == []


@pytest.mark.parametrize("value", ["0", "-5", "every minute", "inf"])
def test_bad_metric_export_interval(monkeypatch, caplog, value):
    """A bad OTEL_METRIC_EXPORT_INTERVAL is hidden from the SDK, which then uses 60000."""
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", value)
    plan = _plan({})
    _one_warning(caplog, "OTEL_METRIC_EXPORT_INTERVAL", value)
    assert plan.scoped_environ == {"OTEL_METRIC_EXPORT_INTERVAL": None}


def test_unknown_id_generator(monkeypatch, caplog):
    """An unknown OTEL_PYTHON_ID_GENERATOR (the SDK would raise) becomes random."""
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "xray")
    plan = _plan({})
    _one_warning(caplog, "OTEL_PYTHON_ID_GENERATOR", "xray")
    assert isinstance(plan.kwargs["id_generator"], RandomIdGenerator)


def test_config_file_without_package(monkeypatch, caplog):
    """OTEL_CONFIG_FILE without opentelemetry-configuration falls back to the variables."""
    monkeypatch.setenv("OTEL_CONFIG_FILE", "/etc/otel.yaml")
    plan = _plan({})
    _one_warning(caplog, "OTEL_CONFIG_FILE", "/etc/otel.yaml")
    assert plan.scoped_environ["OTEL_CONFIG_FILE"] is None


def test_zipkin_json_selectable(monkeypatch, caplog):
    """OTEL_TRACES_EXPORTER=zipkin_json resolves to the Zipkin JSON exporter."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://zipkin:9411/api/v2/spans")
    plan = _plan({})
    assert _warnings(caplog) == []
    assert _sdk_exporters(plan)[0] == {"zipkin_json": ZipkinExporter}
    assert ZipkinExporter().endpoint == "http://zipkin:9411/api/v2/spans"


def test_bad_zipkin_endpoint(monkeypatch, caplog):
    """A bad OTEL_EXPORTER_ZIPKIN_ENDPOINT warns; the exporter gets the default endpoint."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "zipkin:9411")
    plan = _plan({})
    _one_warning(caplog, "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "zipkin:9411")
    args = plan.kwargs["exporter_args_map"][ZipkinExporter]
    assert ZipkinExporter(**args).endpoint == "http://localhost:9411/api/v2/spans"


def test_defaults_plan_hides_everything_but_identity(monkeypatch):
    """The last-resort plan keeps service identity and exports OTLP over http/protobuf."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "api")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "-1")
    plan = _defaults_plan({"auto_instrumentation_version": "0.66b1"})
    assert plan.scoped_environ["OTEL_BSP_MAX_QUEUE_SIZE"] is None
    assert "OTEL_SERVICE_NAME" not in plan.scoped_environ
    assert plan.scoped_environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert plan.scoped_environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert plan.kwargs["auto_instrumentation_version"] == "0.66b1"
    assert "service.name" not in plan.kwargs["resource_attributes"]


def test_configure_falls_back_when_check_raises(monkeypatch, caplog):
    """An unexpected error in our checks is one warning and the defaults are configured."""

    def broken(kwargs):
        raise KeyError("surprise")

    received = []
    monkeypatch.setattr(configurator, "_plan", broken)
    monkeypatch.setattr(
        configurator._OTelSDKConfigurator,
        "_configure",
        lambda self, **kwargs: received.append((kwargs, os.environ.get("OTEL_TRACES_EXPORTER"))),
    )
    configurator.ClStockConfigurator()._configure(auto_instrumentation_version="x")
    assert "Could not check the OpenTelemetry configuration (KeyError" in _warnings(caplog)[0]
    ((kwargs, traces_exporter),) = received
    assert traces_exporter == "otlp"
    assert kwargs["resource_attributes"]["service.name"] == "clstock"
    assert configurator.configurator_ran()


# --- end to end under opentelemetry-instrument -------------------------------------


class _ZipkinHandler(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _ZipkinHandler.received.append((self.path, json.loads(body)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def zipkin_server(monkeypatch) -> Iterator[tuple[str, list]]:
    monkeypatch.setattr(_ZipkinHandler, "received", [])
    server = http.server.HTTPServer(("127.0.0.1", 0), _ZipkinHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v2/spans", _ZipkinHandler.received
    finally:
        server.shutdown()
        server.server_close()


def test_console_and_zipkin_end_to_end(run_instrumented, zipkin_server):
    """Under opentelemetry-instrument a span reaches the console and a Zipkin endpoint."""
    url, received = zipkin_server
    result = run_instrumented(
        SPAN_CODE,
        {"OTEL_TRACES_EXPORTER": "console,zipkin_json", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": url},
    )
    assert result.returncode == 0, result.stderr
    assert "APP-RAN" in result.stdout
    span = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert span["name"] == "clstock-span"
    resource = span["resource"]["attributes"]
    assert resource["service.name"] == "clstock"
    assert resource["telemetry.distro.name"] == "clstock-otel-distro"
    assert "process.pid" in resource
    assert "host.name" in resource
    ((path, spans),) = received
    assert path == "/api/v2/spans"
    assert [s["name"] for s in spans] == ["clstock-span"]
    assert spans[0]["localEndpoint"]["serviceName"] == "clstock"
    assert "Failed to auto initialize" not in result.stderr


def test_bad_values_end_to_end(run_instrumented):
    """Many bad values at once: each warns once on stderr and the process is still traced."""
    bad = {
        "OTEL_TRACES_EXPORTER": "console,jaeger",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=Sup3rS3cret,AlsoS3cret",
        "OTEL_BSP_MAX_QUEUE_SIZE": "-5",
        "OTEL_BSP_SCHEDULE_DELAY": "abc",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "7",
        "OTEL_METRIC_EXPORT_INTERVAL": "0",
        "OTEL_PYTHON_ID_GENERATOR": "xray",
    }
    result = run_instrumented(SPAN_CODE, bad)
    assert result.returncode == 0, result.stderr
    assert "APP-RAN" in result.stdout
    assert '"name": "clstock-span"' in result.stdout
    for name, value in bad.items():
        if name in ("OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER"):
            continue
        shown = "***" if "HEADERS" in name else repr(value)
        assert result.stderr.count(f"{name}={shown} is invalid") == 1, (name, result.stderr)
    assert "S3cret" not in result.stderr
    assert "Failed to auto initialize" not in result.stderr
    assert "Traceback" not in result.stderr


def test_sdk_failure_falls_back_to_defaults(run_instrumented):
    """When the SDK itself raises (grpc + deflate), the process still gets an OTLP exporter."""
    code = """
import os
from opentelemetry import trace
provider = trace.get_tracer_provider()
processors = provider._active_span_processor._span_processors
exporters = [type(p.span_exporter).__module__ for p in processors]
print("PROVIDER", type(provider).__name__, exporters)
os._exit(0)  # skip the exit-time export to a collector that is not there
"""
    result = run_instrumented(
        code,
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "deflate",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "OpenTelemetry SDK configuration failed (InvalidCompressionValueException" in (
        result.stderr
    )
    # The span pipeline's provider is an SDK TracerProvider subclass.
    assert re.search(r"PROVIDER (Pipeline)?TracerProvider ", result.stdout)
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in result.stdout
    assert "Failed to auto initialize" not in result.stderr
