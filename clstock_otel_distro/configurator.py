"""ClStockConfigurator: the ``opentelemetry_configurator`` entry point named ``clstock``.

It builds the TracerProvider, MeterProvider and LoggerProvider from the standard
``OTEL_*`` variables through the SDK's own ``_initialize_components``, after two
adjustments:

- the resource: ``service.name`` defaults to ``clstock``, ``telemetry.distro.*``
  name this distro, and the process, os and host detectors are on by default;
- validation: every value the SDK would choke on (an unknown exporter name makes it
  raise, which makes ``sitecustomize`` give up on all instrumentation; a zero
  batch size raises after the tracer provider is installed) is checked first. Each
  bad value logs one warning naming the variable and the value, and a documented
  fallback is handed to the SDK instead, as an explicit argument where the SDK
  takes one, otherwise by hiding or replacing that one variable for the duration of
  the SDK call.

If anything unexpected still goes wrong, the process is configured with the
defaults (OTLP over http/protobuf to localhost) rather than left untraced.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_PYTHON_ID_GENERATOR,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_ZIPKIN_ENDPOINT,
    OTEL_EXPORTER_ZIPKIN_TIMEOUT,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.semconv._incubating.attributes.service_attributes import SERVICE_INSTANCE_ID
from opentelemetry.semconv._incubating.attributes.telemetry_attributes import (
    TELEMETRY_DISTRO_NAME,
    TELEMETRY_DISTRO_VERSION,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.util._importlib_metadata import entry_points

from clstock_otel_distro import config as _config
from clstock_otel_distro._logging import install_stderr_fallback
from clstock_otel_distro.patches import (
    metric_records,
    otlp_attribute_cache,
    otlp_http_durable,
    otlp_http_urllib3,
    registry,
    resource_hash,
)
from clstock_otel_distro.sdk import prometheus_workers as _prometheus_workers
from clstock_otel_distro.sdk.pipeline import wiring as _span_pipeline
from clstock_otel_distro.sdk.repeated_warnings import install_repeated_warning_filter
from clstock_otel_distro.sdk.shutdown import install_exit_hooks
from clstock_otel_distro.version import __version__

__all__ = [
    "DEFAULT_RESOURCE_DETECTORS",
    "DEFAULT_SERVICE_NAME",
    "DISTRO_NAME",
    "ClStockConfigurator",
    "configurator_ran",
]

_logger = logging.getLogger(__name__)
install_stderr_fallback()

DISTRO_NAME = "clstock-otel-distro"
DEFAULT_SERVICE_NAME = "clstock"
# Added in front of any user-selected detectors (front = lowest precedence).
DEFAULT_RESOURCE_DETECTORS = ("process", "os", "host")

# Spelled out rather than imported: older SDKs do not define it.
_OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"
_DEFAULT_PROTOCOL = _config.DEFAULT_OTLP_PROTOCOL
_EXPORTER_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_DEFAULT_OTLP_ENDPOINT = _config.DEFAULT_OTLP_ENDPOINTS
_DEFAULT_ZIPKIN_ENDPOINT = "http://localhost:9411/api/v2/spans"
_DEFAULT_ZIPKIN_TIMEOUT = 10
_DEFAULT_SAMPLER = "parentbased_always_on"
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_DEFAULT_METRIC_EXPORT_INTERVAL = 60000
_DEFAULT_METRIC_EXPORT_TIMEOUT = 30000
_COMPRESSIONS = ("gzip", "deflate", "none")
_SAMPLER_GROUP = "opentelemetry_traces_sampler"
_ID_GENERATOR_GROUP = "opentelemetry_id_generator"
_RESOURCE_DETECTOR_GROUP = "opentelemetry_resource_detector"

# Set by ClStockConfigurator._configure; read by the post-instrument start-up check.
_configurator_ran = False


def configurator_ran() -> bool:
    """Whether ClStockConfigurator configured this process."""
    return _configurator_ran


@dataclass(frozen=True)
class _Signal:
    name: str
    exporter_var: str
    bases: tuple[type, ...]
    fallback: tuple[str, ...]

    @property
    def group(self) -> str:
        return f"opentelemetry_{self.name}_exporter"

    @property
    def http_path(self) -> str:
        return f"v1/{self.name}"

    def otlp_var(self, setting: str) -> str:
        """The signal's own OTLP exporter variable, e.g. OTEL_EXPORTER_OTLP_TRACES_ENDPOINT."""
        return f"OTEL_EXPORTER_OTLP_{self.name.upper()}_{setting}"


_SIGNALS = (
    _Signal("traces", OTEL_TRACES_EXPORTER, (SpanExporter,), ("otlp",)),
    _Signal("metrics", OTEL_METRICS_EXPORTER, (MetricExporter, MetricReader), ("otlp",)),
    # Logs are exported only when OTEL_LOGS_EXPORTER asks for it, so a list of
    # nothing but bad names falls back to no log exporter.
    _Signal("logs", OTEL_LOGS_EXPORTER, (LogRecordExporter,), ()),
)

_MAX_METRIC_MILLIS = 86_400_000
# Seconds (the Python exporters read OTEL_EXPORTER_OTLP_*TIMEOUT in seconds, where the
# spec says milliseconds: 10000 is more likely meant as 10 s than as 2.8 hours).
_MAX_OTLP_TIMEOUT = 3600

# What the last-resort configuration keeps from the environment: who the service
# is, and whether the SDK is disabled. Every other OTEL_ variable is hidden.
_KEPT_BY_DEFAULTS = frozenset(
    {
        OTEL_SERVICE_NAME,
        OTEL_RESOURCE_ATTRIBUTES,
        OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
        OTEL_SDK_DISABLED,
    }
)


class _CountingProcessorFactory:
    """``export_span_processor`` for the SDK: a batch processor with explicit settings.

    The span pipeline's processor for the OTLP/HTTP exporter, else a BatchSpanProcessor
    (:func:`clstock_otel_distro.sdk.pipeline.build_span_processor`). Both scrub
    credentials from URL attributes (:mod:`clstock_otel_distro.sdk.redaction`). The
    factory counts what it built, so that after a failure we know whether every trace
    exporter got its processor.
    """

    def __init__(self, **settings: int) -> None:
        self.settings = settings
        self.built = 0

    def __call__(self, span_exporter: SpanExporter) -> SpanProcessor:
        processor = _span_pipeline.build_span_processor(span_exporter, **self.settings)
        self.built += 1
        return processor


@dataclass
class _Plan:
    """What to hand the SDK: kwargs for ``_initialize_components`` and variables to change."""

    kwargs: dict[str, Any]
    # Replaced (str) or hidden (None) only while the SDK call runs.
    scoped_environ: dict[str, str | None] = field(default_factory=dict)
    # Written to os.environ (str) or removed from it (None) for good (read again
    # after the call: by the SDK after a fork, by instrumentations).
    lasting_environ: dict[str, str | None] = field(default_factory=dict)
    # Exporter entry point name -> class, per signal, as the SDK will load them.
    exporters: dict[str, dict[str, type]] = field(default_factory=dict)

    @property
    def exporter_args(self) -> dict[type, dict[str, Any]]:
        return self.kwargs.setdefault("exporter_args_map", {})


class ClStockConfigurator(_OTelSDKConfigurator):
    """Validates the OTEL_* configuration, adds ClStock's resource, then runs the SDK's."""

    def _configure(self, **kwargs: Any) -> None:
        global _configurator_ran
        _configurator_ran = True
        # Warnings the SDK logs for every span (an attribute cut to the length
        # limit...): the first of each kind, then a count once a minute.
        install_repeated_warning_filter()
        try:
            plan = _plan(kwargs)
        except Exception as exc:
            _warn_failure("Could not check the OpenTelemetry configuration", exc,
                          "; using the defaults")
            plan = _defaults_plan(kwargs)
        _config.set_environ(plan.lasting_environ)
        # The OTLP encoders hash the resource of every exported span, and encode
        # every attribute of every span anew: both done once instead.
        registry.install(resource_hash.PATCH)
        registry.install(otlp_attribute_cache.PATCH)
        # Every measurement's attributes cleaned, copied and hashed to find its
        # aggregation: found once per attribute set instead.
        registry.install(metric_records.PATCH)
        # A batch the collector cannot take now is kept and retried, not given up.
        registry.install(otlp_http_durable.PATCH)
        try:
            # The OTLP/HTTP exporters built in the call send with urllib3 where the
            # request stays the same (patches/otlp_http_urllib3.py).
            with _environ_overrides(plan.scoped_environ), \
                    _span_pipeline.sdk_builds_pipeline_provider(), \
                    otlp_http_urllib3.sdk_builds_urllib3_clients(plan.kwargs):
                super()._configure(**plan.kwargs)
        except Exception as exc:
            _warn_failure("OpenTelemetry SDK configuration failed", exc,
                          "; configuring the defaults (OTLP over http/protobuf to localhost) "
                          "instead")
            self._configure_defaults(kwargs, plan)
        install_exit_hooks()

    def _configure_defaults(self, kwargs: Mapping[str, Any], failed: _Plan) -> None:
        plan = _defaults_plan(kwargs)
        try:
            with _environ_overrides(plan.scoped_environ), \
                    otlp_http_urllib3.sdk_builds_urllib3_clients(plan.kwargs):
                provider = trace.get_tracer_provider()
                if not isinstance(provider, TracerProvider):
                    super()._configure(**plan.kwargs)
                    return
                # The failed attempt already installed its tracer provider, and a
                # provider can be installed only once: complete it instead.
                factory = failed.kwargs.get("export_span_processor")
                expected = len(failed.exporters.get("traces", {}))
                if isinstance(factory, _CountingProcessorFactory) and factory.built < expected:
                    provider.add_span_processor(
                        _span_pipeline.build_span_processor(_default_otlp_exporter("traces"))
                    )
                wants_metrics = plan.scoped_environ[OTEL_METRICS_EXPORTER] != "none"
                if wants_metrics and not isinstance(metrics.get_meter_provider(), MeterProvider):
                    reader = PeriodicExportingMetricReader(_default_otlp_exporter("metrics"))
                    metrics.set_meter_provider(
                        MeterProvider(resource=provider.resource, metric_readers=[reader])
                    )
        except Exception as exc:
            _warn_failure("OpenTelemetry could not be configured even with the defaults", exc)


def _warn_failure(what: str, exc: BaseException, then: str = "") -> None:
    """One warning with the exception's type and message; the traceback at debug."""
    _logger.warning("%s (%s: %s)%s", what, type(exc).__name__, exc, then)
    _logger.debug("%s", what, exc_info=True)


def _default_otlp_exporter(signal: str) -> Any:
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter,
    )

    return OTLPMetricExporter()


@contextlib.contextmanager
def _environ_overrides(overrides: Mapping[str, str | None]) -> Iterator[None]:
    """Replace (str) or hide (None) variables for the duration of the block."""
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        _config.set_environ(overrides)
        yield
    finally:
        _config.set_environ(saved)


def _entry_point_names(group: str) -> set[str]:
    return {entry_point.name for entry_point in entry_points(group=group)}


def _load_entry_point(group: str, name: str) -> Any:
    # The same lookup the SDK does: the first entry point of that name.
    return next(iter(entry_points(group=group, name=name))).load()


def _is_bad(name: str, parsed: object) -> bool:
    """Set, but the _config helper rejected it (it returned the None default)."""
    return parsed is None and _config.env_str(name) is not None


def _plan(kwargs: Mapping[str, Any]) -> _Plan:
    """Check the environment and decide what the SDK gets; never touches os.environ."""
    plan = _Plan(kwargs=dict(kwargs))
    args_map = plan.kwargs.get("exporter_args_map") or {}
    plan.kwargs["exporter_args_map"] = {cls: dict(args) for cls, args in args_map.items()}
    if _declarative_config(plan):
        return plan
    _plan_empty(plan)
    _plan_resource(plan)
    protocols = _plan_protocols(plan)
    for signal in _SIGNALS:
        plan.exporters[signal.name] = _plan_exporters(plan, signal, protocols[signal.name])
    # OTEL_METRICS_EXPORTER=prometheus: a port of its own for each worker process.
    _prometheus_workers.plan_reader(plan)
    _plan_otlp(plan)
    _plan_zipkin(plan)
    _plan_sampler(plan)
    _plan_id_generator(plan)
    _plan_processors(plan)
    _plan_metric_reader(plan)
    _logger.debug(
        "Exporters %s; SDK arguments %s; variables changed for the SDK call %s",
        {name: sorted(found) for name, found in plan.exporters.items()},
        sorted(plan.kwargs),
        sorted(plan.scoped_environ),
    )
    return plan


def _defaults_plan(kwargs: Mapping[str, Any]) -> _Plan:
    """The last resort: OTLP over http/protobuf for traces and metrics, nothing else.

    Only the service identity (and an explicit "none" exporter) survive from the
    environment; every other OTEL_ variable is hidden for the SDK call.
    """
    scoped: dict[str, str | None] = {
        name: None
        for name in os.environ
        if name.startswith("OTEL_") and name not in _KEPT_BY_DEFAULTS
    }
    scoped[OTEL_EXPORTER_OTLP_PROTOCOL] = _DEFAULT_PROTOCOL
    for name in (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER):
        # An explicit "none" cannot have caused the failure; keep the operator's choice.
        disabled = (_config.env_str(name) or "").lower() == "none"
        scoped[name] = "none" if disabled else "otlp"
    # Our processor still: the spans of a process on its last resort are redacted too.
    plan = _Plan(kwargs={"export_span_processor": _CountingProcessorFactory()},
                 scoped_environ=scoped)
    if "auto_instrumentation_version" in kwargs:
        plan.kwargs["auto_instrumentation_version"] = kwargs["auto_instrumentation_version"]
    attributes = {TELEMETRY_DISTRO_NAME: DISTRO_NAME, TELEMETRY_DISTRO_VERSION: __version__}
    with contextlib.suppress(Exception):
        if SERVICE_NAME not in _environment_resource_keys():
            attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    plan.kwargs["resource_attributes"] = attributes
    return plan


def _declarative_config(plan: _Plan) -> bool:
    """OTEL_CONFIG_FILE: the SDK hands everything to opentelemetry-configuration."""
    config_file = _config.env_str(_OTEL_CONFIG_FILE)
    if config_file is None:
        return False
    if importlib.util.find_spec("opentelemetry.configuration") is not None:
        # The file owns the whole configuration; kwargs would only make the SDK
        # warn that it ignores them.
        plan.kwargs = {}
        return True
    # Without the package the SDK raises RuntimeError; configure from the
    # environment instead.
    _config.warn_invalid(
        _OTEL_CONFIG_FILE,
        config_file,
        "the opentelemetry-configuration package is not installed",
        "the OTEL_* environment variables",
    )
    plan.scoped_environ[_OTEL_CONFIG_FILE] = None
    return False


def _plan_empty(plan: _Plan) -> None:
    """Remove the OTEL_ variables set to an empty value: the spec says empty means unset.

    The SDK and the instrumentations mostly read ``os.environ.get(name, default)``,
    for which empty is a value: an empty OTEL_PYTHON_ID_GENERATOR or limit makes the
    SDK raise, an empty sampler makes it warn. Removed for good, so that what reads
    them later (instrumentations, forked workers) sees them unset too.
    """
    for name, value in os.environ.items():
        if name.startswith("OTEL_") and not value.strip():
            plan.lasting_environ[name] = None


def _environment_resource_keys() -> set[str]:
    """Resource keys OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME give a non-empty value."""
    keys = _config.resource_attribute_keys()
    if _config.env_str(OTEL_SERVICE_NAME):
        keys.add(SERVICE_NAME)
    return keys


def _plan_resource(plan: _Plan) -> None:
    available = _entry_point_names(_RESOURCE_DETECTOR_GROUP)
    selected = _config.env_list(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS)
    ours = [name for name in DEFAULT_RESOURCE_DETECTORS if name in available]
    detectors = list(dict.fromkeys(ours + _config.resource_detectors(available)))
    if detectors != selected:
        # Written for good, not only for the SDK call: after a fork the providers
        # re-run the process-dependent detectors listed in this variable, and
        # process.pid must follow the new process.
        plan.lasting_environ[OTEL_EXPERIMENTAL_RESOURCE_DETECTORS] = ",".join(detectors)

    _plan_resource_attributes(plan)
    attributes = dict(plan.kwargs.get("resource_attributes") or {})
    attributes.setdefault(TELEMETRY_DISTRO_NAME, DISTRO_NAME)
    attributes.setdefault(TELEMETRY_DISTRO_VERSION, __version__)
    # Attributes passed here override OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME,
    # so the defaults are passed only for keys those leave unset.
    from_environment = _environment_resource_keys()
    if SERVICE_NAME not in from_environment:
        attributes.setdefault(SERVICE_NAME, DEFAULT_SERVICE_NAME)
    # SDK 1.45 ships a service_instance detector (a uuid4 per process, renewed
    # after fork); older SDKs need it passed here.
    if "service_instance" not in available and SERVICE_INSTANCE_ID not in from_environment:
        attributes.setdefault(SERVICE_INSTANCE_ID, str(uuid.uuid4()))
    plan.kwargs["resource_attributes"] = attributes


def _plan_resource_attributes(plan: _Plan) -> None:
    """Only the well-formed entries of OTEL_RESOURCE_ATTRIBUTES reach the SDK.

    The SDK logs each malformed entry (raw, without naming the variable) every time
    it builds a resource. The distro already did this before the SDK's first
    resource; this covers a configurator run without it. Written for good, since
    every later ``Resource.create()`` reads the variable again.
    """
    plan.lasting_environ.update(_config.resource_attributes_fix())


def _plan_protocols(plan: _Plan) -> dict[str, str | None]:
    """Each signal's OTLP protocol, as the SDK will resolve it (None: the SDK's grpc)."""
    generic = _config.env_choice(
        OTEL_EXPORTER_OTLP_PROTOCOL, None, _EXPORTER_BY_PROTOCOL, fallback=repr(_DEFAULT_PROTOCOL)
    )
    if _is_bad(OTEL_EXPORTER_OTLP_PROTOCOL, generic):
        # The SDK raises RuntimeError for an unknown protocol.
        plan.scoped_environ[OTEL_EXPORTER_OTLP_PROTOCOL] = _DEFAULT_PROTOCOL
        generic = _DEFAULT_PROTOCOL
    protocols: dict[str, str | None] = {}
    for signal in _SIGNALS:
        own = _config.env_choice(
            signal.otlp_var("PROTOCOL"),
            None,
            _EXPORTER_BY_PROTOCOL,
            fallback=repr(generic or _DEFAULT_PROTOCOL),
        )
        if _is_bad(signal.otlp_var("PROTOCOL"), own):
            # A bad per-signal value is ignored as if unset, so the general
            # variable applies; without one, http/protobuf.
            plan.scoped_environ[signal.otlp_var("PROTOCOL")] = (
                None if generic else _DEFAULT_PROTOCOL)
            own = generic or _DEFAULT_PROTOCOL
        protocols[signal.name] = own or generic
    return protocols


def _check_exporter(signal: _Signal, name: str, available: set[str]) -> tuple[type | None, str]:
    if name not in available:
        return None, "is unknown"
    try:
        exporter = _load_entry_point(signal.group, name)
    except Exception as exc:
        return None, f"cannot be loaded: {type(exc).__name__}: {exc}"
    if not (isinstance(exporter, type) and issubclass(exporter, signal.bases)):
        return None, f"is not a {signal.name} exporter"
    return exporter, ""


def _plan_exporters(plan: _Plan, signal: _Signal, protocol: str | None) -> dict[str, type]:
    """The exporters the SDK will build for one signal, bad names dropped."""
    raw = _config.env_str(signal.exporter_var)
    if raw is None or raw.lower() == "none":
        return {}
    available = _entry_point_names(signal.group)
    kept: list[str] = []
    classes: dict[str, type] = {}
    problems: list[str] = []
    for name in (entry.strip().lower() for entry in raw.split(",")):
        if not name or name in kept:
            continue
        if name == "none":
            problems.append("'none' cannot be combined with exporters")
            continue
        # The SDK maps "otlp" to the exporter of the signal's protocol.
        resolved = _EXPORTER_BY_PROTOCOL[protocol or "grpc"] if name == "otlp" else name
        exporter, problem = _check_exporter(signal, resolved, available)
        if exporter is None:
            problems.append(f"{name!r} {problem}")
            continue
        kept.append(name)
        classes[resolved] = exporter
    fallback = "no exporter"
    if not kept and signal.fallback:
        kept = list(signal.fallback)
        resolved = _EXPORTER_BY_PROTOCOL[protocol or "grpc"]
        exporter, _ = _check_exporter(signal, resolved, available)
        if exporter is not None:
            classes[resolved] = exporter
    if kept:
        fallback = repr(",".join(kept))
    if problems:
        choices = ", ".join(sorted(available | {"otlp", "none"}))
        _config.warn_invalid(
            signal.exporter_var, raw, f"{'; '.join(problems)}; available: {choices}", fallback
        )
    if kept != [entry.strip() for entry in raw.split(",")]:
        # The SDK appends the names it reads from this variable to the ones it is
        # given and raises RuntimeError on an unknown one, so the cleaned list can
        # only reach it through the variable.
        plan.scoped_environ[signal.exporter_var] = ",".join(kept) or "none"
    return classes


def _plan_otlp(plan: _Plan) -> None:
    """Endpoints, headers, compression and timeouts of the OTLP exporters."""
    generic_endpoint = _config.env_url(
        OTEL_EXPORTER_OTLP_ENDPOINT,
        None,
        fallback="the default endpoint of the protocol (http://localhost:4318 or :4317 for grpc)",
    )
    generic_bad = _is_bad(OTEL_EXPORTER_OTLP_ENDPOINT, generic_endpoint)
    for signal in _SIGNALS:
        own = _config.env_url(
            signal.otlp_var("ENDPOINT"),
            None,
            fallback=f"{OTEL_EXPORTER_OTLP_ENDPOINT} or the default endpoint",
        )
        own_bad = _is_bad(signal.otlp_var("ENDPOINT"), own)
        needs_endpoint = own_bad or (own is None and generic_bad)
        for protocol, exporter_name in _EXPORTER_BY_PROTOCOL.items():
            exporter = plan.exporters[signal.name].get(exporter_name)
            if exporter is None or not needs_endpoint:
                continue
            base = generic_endpoint or _DEFAULT_OTLP_ENDPOINT[protocol]
            # The exporters take an explicit endpoint over the variables; an
            # http one takes the full URL, signal path included.
            endpoint = base if protocol == "grpc" else f"{base.rstrip('/')}/{signal.http_path}"
            plan.exporter_args.setdefault(exporter, {}).setdefault("endpoint", endpoint)

    for name in (OTEL_EXPORTER_OTLP_HEADERS, *(signal.otlp_var("HEADERS") for signal in _SIGNALS)):
        headers = _config.env_headers(name)
        if headers is not None and headers != _config.env_str(name):
            # The exporters parse these variables themselves even when given
            # headers, and the SDK's parser logs malformed entries verbatim:
            # secrets. Only the well-formed entries may reach it.
            plan.scoped_environ[name] = headers or None

    for name in (OTEL_EXPORTER_OTLP_COMPRESSION, *(s.otlp_var("COMPRESSION") for s in _SIGNALS)):
        compression = _config.env_choice(name, None, _COMPRESSIONS, fallback="no compression")
        if _is_bad(name, compression):
            # The grpc exporters raise on an unknown compression.
            plan.scoped_environ[name] = None
    for name in (OTEL_EXPORTER_OTLP_TIMEOUT, *(s.otlp_var("TIMEOUT") for s in _SIGNALS)):
        timeout = _config.env_float(name, None, minimum=0, maximum=_MAX_OTLP_TIMEOUT,
                                    fallback="the default 10 seconds")
        if _is_bad(name, timeout):
            # The grpc exporters raise on a non-numeric timeout.
            plan.scoped_environ[name] = None


def _plan_zipkin(plan: _Plan) -> None:
    exporter = plan.exporters["traces"].get("zipkin_json")
    if exporter is None:
        return
    endpoint = _config.env_url(
        OTEL_EXPORTER_ZIPKIN_ENDPOINT, None, fallback=repr(_DEFAULT_ZIPKIN_ENDPOINT)
    )
    if _is_bad(OTEL_EXPORTER_ZIPKIN_ENDPOINT, endpoint):
        plan.exporter_args.setdefault(exporter, {}).setdefault("endpoint", _DEFAULT_ZIPKIN_ENDPOINT)
    timeout = _config.env_int(
        OTEL_EXPORTER_ZIPKIN_TIMEOUT, None, minimum=1, fallback=f"{_DEFAULT_ZIPKIN_TIMEOUT}"
    )
    if _is_bad(OTEL_EXPORTER_ZIPKIN_TIMEOUT, timeout):
        # The zipkin exporter int()s the variable when not given a timeout.
        plan.exporter_args.setdefault(exporter, {}).setdefault("timeout", _DEFAULT_ZIPKIN_TIMEOUT)


def _plan_sampler(plan: _Plan) -> None:
    """An explicit sampler from OTEL_TRACES_SAMPLER(_ARG), built the way the SDK builds it."""
    if plan.kwargs.get("sampler") is not None or _config.env_str(OTEL_TRACES_SAMPLER) is None:
        return  # the SDK default: parentbased_always_on
    name = _config.env_choice(
        OTEL_TRACES_SAMPLER, _DEFAULT_SAMPLER, _entry_point_names(_SAMPLER_GROUP)
    )
    if name in _RATIO_SAMPLERS:
        arg: Any = _config.env_float(OTEL_TRACES_SAMPLER_ARG, 1.0, minimum=0.0, maximum=1.0)
    else:
        arg = _config.env_str(OTEL_TRACES_SAMPLER_ARG)
    try:
        sampler = _load_entry_point(_SAMPLER_GROUP, name)(arg)
        if not isinstance(sampler, Sampler):
            raise TypeError(f"{type(sampler).__name__} is not a Sampler")
    except Exception as exc:
        _warn_failure(f"{OTEL_TRACES_SAMPLER}={name!r} could not be created", exc,
                      f"; using {_DEFAULT_SAMPLER} instead")
        sampler = ParentBased(ALWAYS_ON)
    plan.kwargs["sampler"] = sampler


def _plan_id_generator(plan: _Plan) -> None:
    if plan.kwargs.get("id_generator") is not None:
        return
    if _config.env_str(OTEL_PYTHON_ID_GENERATOR) is None:
        return
    name = _config.env_choice(
        OTEL_PYTHON_ID_GENERATOR, "random", _entry_point_names(_ID_GENERATOR_GROUP)
    )
    try:
        generator = _load_entry_point(_ID_GENERATOR_GROUP, name)()
        if not isinstance(generator, IdGenerator):
            raise TypeError(f"{type(generator).__name__} is not an IdGenerator")
    except Exception as exc:
        _warn_failure(f"{OTEL_PYTHON_ID_GENERATOR}={name!r} could not be created", exc,
                      "; using 'random' instead")
        generator = RandomIdGenerator()
    # Explicit, because the SDK raises RuntimeError for an unknown name.
    plan.kwargs["id_generator"] = generator


def _plan_processors(plan: _Plan) -> None:
    # Explicit arguments: the SDK's processors int() these variables themselves,
    # log a traceback for garbage, and raise (after the tracer provider is
    # installed) for zero or negative values.
    if plan.kwargs.get("export_span_processor") is None:
        plan.kwargs["export_span_processor"] = _CountingProcessorFactory(
            **_config.batch_settings(_config.SPAN_BATCH_SETTINGS)
        )
    if plan.kwargs.get("export_log_record_processor") is None and plan.exporters["logs"]:
        settings = _config.batch_settings(_config.LOG_BATCH_SETTINGS)
        if settings:
            plan.kwargs["export_log_record_processor"] = functools.partial(
                BatchLogRecordProcessor, **settings
            )


def _plan_metric_reader(plan: _Plan) -> None:
    # The SDK builds the PeriodicExportingMetricReader without arguments, so a bad
    # value can only be kept from it by hiding the variable; zero or negative
    # intervals would raise after the tracer provider is installed.
    for name, minimum, default in (
        (OTEL_METRIC_EXPORT_INTERVAL, 1, _DEFAULT_METRIC_EXPORT_INTERVAL),
        (OTEL_METRIC_EXPORT_TIMEOUT, 0, _DEFAULT_METRIC_EXPORT_TIMEOUT),
    ):
        value = _config.env_float(name, None, minimum=minimum, maximum=_MAX_METRIC_MILLIS,
                                  fallback=f"the default {default}")
        if _is_bad(name, value):
            plan.scoped_environ[name] = None
