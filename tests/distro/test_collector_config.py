"""Structural checks of otel-collector.yaml, docker-compose.yml and deploy/prometheus.yml.

No collector binary runs here. Instead, each rule the collector (or the deployment)
relies on is written as a checker that returns a list of problems. The tests run every
checker against the real files and expect no problems. test_checker_flags_broken_copy
runs the same checkers on deliberately broken copies and expects problems, so every
check is known to be able to fail.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_YAML = REPO / "otel-collector.yaml"
COMPOSE_YAML = REPO / "docker-compose.yml"
PROMETHEUS_YAML = REPO / "deploy" / "prometheus.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
README = REPO / "README.md"

COLLECTOR_SERVICE = "otel-collector"
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")

# Connector type -> (signal it consumes as an exporter, signal it emits as a receiver);
# None means "the same signal on both sides" (forward). Taken from each connector's
# "Supported Pipeline Types" table in the collector(-contrib) READMEs.
CONNECTOR_SIGNALS: dict[str, tuple[str, str] | None] = {
    "spanmetrics": ("traces", "metrics"),
    "servicegraph": ("traces", "metrics"),
    "forward": None,
}
# Exporters that store traces for people to look at: these must get sampled traces.
TRACE_BACKENDS = ("otlp/jaeger", "zipkin")
# Connectors that derive metrics from spans: these must see every span.
METRIC_CONNECTORS = ("spanmetrics", "servicegraph")

CLSTOCK_SERVICES = {
    "market-replay": ("app.market_replay:app", "clstock-market-replay", 8001),
    "data-service": ("app.data_service:app", "clstock-data-service", 8002),
    "api": ("app.main:app", "clstock-api", 8000),
}

Config = dict[str, Any]


# ----------------------------------------------------------------------------- helpers


def _load(path: Path) -> Config:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def collector() -> Config:
    return _load(COLLECTOR_YAML)


@pytest.fixture(scope="module")
def compose() -> Config:
    return _load(COMPOSE_YAML)


@pytest.fixture(scope="module")
def prometheus() -> Config:
    return _load(PROMETHEUS_YAML)


def _type(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp``: a component id is ``type[/name]``."""
    return component_id.split("/", 1)[0]


def _pipelines(cfg: Config) -> dict[str, Config]:
    return (cfg.get("service") or {}).get("pipelines") or {}


def _defined(cfg: Config, kind: str) -> set[str]:
    return set(cfg.get(kind) or {})


def _signal(pipeline_id: str) -> str:
    """``traces/sampled`` -> ``traces``: a pipeline id is ``signal[/name]``."""
    return _type(pipeline_id)


def _port(endpoint: str) -> int:
    """The port of ``host:port`` or of a URL."""
    match = re.search(r":(\d+)(?:/|$)", str(endpoint))
    assert match, f"no port in {endpoint!r}"
    return int(match.group(1))


def _host(endpoint: str) -> str:
    return str(endpoint).rsplit(":", 1)[0]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def _duration_ms(value: Any) -> float | None:
    """A Go duration string (``250ms``, ``1s``, ``1m30s``) in milliseconds; None if not one."""
    if not isinstance(value, str):
        return None  # a bare YAML number is a Go time.Duration in *nanoseconds*
    text = value.strip()
    if not text or _DURATION_PART.sub("", text):
        return None
    return sum(float(n) * _DURATION_MS[unit] for n, unit in _DURATION_PART.findall(text))


def _published(service: Config) -> dict[int, int]:
    """Container port -> host port, for the short and the long port syntax."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            target = int(entry["target"])
            ports[target] = int(entry.get("published", target))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        target = int(parts[-1])
        ports[target] = int(parts[-2]) if len(parts) > 1 else target
    return ports


def _environment(service: Config) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: Config) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _otlp_receiver(cfg: Config) -> Config:
    receivers = cfg.get("receivers") or {}
    otlp = [v for k, v in receivers.items() if _type(k) == "otlp"]
    assert otlp, "no otlp receiver"
    return otlp[0] or {}


# ---------------------------------------------------------------------------- checkers


def reference_problems(cfg: Config) -> list[str]:
    """Pipelines and service.extensions name only components that are defined."""
    problems = []
    allowed = {
        "receivers": _defined(cfg, "receivers") | _defined(cfg, "connectors"),
        "processors": _defined(cfg, "processors"),
        "exporters": _defined(cfg, "exporters") | _defined(cfg, "connectors"),
    }
    if not _pipelines(cfg):
        problems.append("service.pipelines is empty")
    for pipeline_id, pipeline in _pipelines(cfg).items():
        pipeline = pipeline or {}
        for kind, names in allowed.items():
            for name in pipeline.get(kind) or []:
                if name not in names:
                    problems.append(f"{pipeline_id}: {kind} names undefined {name!r}")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"{pipeline_id}: needs at least one receiver and one exporter")
    for name in (cfg.get("service") or {}).get("extensions") or []:
        if name not in _defined(cfg, "extensions"):
            problems.append(f"service.extensions names undefined {name!r}")
    return problems


def unused_problems(cfg: Config) -> list[str]:
    """Every defined component is used by some pipeline (extensions: by service.extensions)."""
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for pipeline in _pipelines(cfg).values():
        for kind in ("receivers", "processors", "exporters"):
            used[kind].update((pipeline or {}).get(kind) or [])
    used["connectors"] = used["receivers"] | used["exporters"]
    used["extensions"] = set((cfg.get("service") or {}).get("extensions") or [])
    return [
        f"{kind}: {name!r} is defined but never used"
        for kind in KINDS
        for name in sorted(_defined(cfg, kind) - used[kind])
    ]


def connector_problems(cfg: Config) -> list[str]:
    """Each connector is exported to and received from, between pipelines of the right signals."""
    pipelines = {k: v or {} for k, v in _pipelines(cfg).items()}
    problems = []
    for connector in sorted(_defined(cfg, "connectors")):
        kind = _type(connector)
        if kind not in CONNECTOR_SIGNALS:
            problems.append(f"{connector}: unknown connector type (add it to CONNECTOR_SIGNALS)")
            continue
        into = [p for p, v in pipelines.items() if connector in (v.get("exporters") or [])]
        out = [p for p, v in pipelines.items() if connector in (v.get("receivers") or [])]
        if not into:
            problems.append(f"{connector}: no pipeline exports to it")
        if not out:
            problems.append(f"{connector}: no pipeline receives from it")
        signals = CONNECTOR_SIGNALS[kind]
        for pipeline_id in into:
            if signals and _signal(pipeline_id) != signals[0]:
                problems.append(f"{connector}: fed by {pipeline_id}, but it consumes {signals[0]}")
        for pipeline_id in out:
            if signals and _signal(pipeline_id) != signals[1]:
                problems.append(f"{connector}: feeds {pipeline_id}, but it emits {signals[1]}")
            if signals is None and any(_signal(p) != _signal(pipeline_id) for p in into):
                problems.append(f"{connector}: joins different signals into {pipeline_id}")
    return problems


def processor_order_problems(cfg: Config) -> list[str]:
    """memory_limiter first; batch present, last, and after tail_sampling."""
    problems = []
    for pipeline_id, pipeline in _pipelines(cfg).items():
        types = [_type(p) for p in (pipeline or {}).get("processors") or []]
        if not types or types[0] != "memory_limiter":
            problems.append(f"{pipeline_id}: memory_limiter must be the first processor ({types})")
        if "batch" not in types:
            problems.append(f"{pipeline_id}: no batch processor ({types})")
            continue
        if types[-1] != "batch":
            problems.append(f"{pipeline_id}: batch must be the last processor ({types})")
        if "tail_sampling" in types and types.index("tail_sampling") > types.index("batch"):
            problems.append(f"{pipeline_id}: batch must come after tail_sampling ({types})")
    return problems


def tail_sampling_problems(cfg: Config) -> list[str]:
    """Errors, slow traces and a probabilistic share of the rest are all kept."""
    processors = cfg.get("processors") or {}
    samplers = [v or {} for k, v in processors.items() if _type(k) == "tail_sampling"]
    if not samplers:
        return ["no tail_sampling processor"]
    policies = [p for s in samplers for p in s.get("policies") or []]
    by_type: dict[str, list[Config]] = {}
    for policy in policies:
        by_type.setdefault(policy.get("type"), []).append(policy.get(policy.get("type")) or {})
    problems = []
    if not any("ERROR" in (p.get("status_codes") or []) for p in by_type.get("status_code", [])):
        problems.append("no status_code policy keeping ERROR traces")
    if not any((p.get("threshold_ms") or 0) > 0 for p in by_type.get("latency", [])):
        problems.append("no latency policy with a positive threshold_ms")
    if not any(
        0 < (p.get("sampling_percentage") or 0) < 100 for p in by_type.get("probabilistic", [])
    ):
        problems.append("no probabilistic policy with 0 < sampling_percentage < 100")
    names = [p.get("name") for p in policies]
    if len(set(names)) != len(names) or None in names:
        problems.append(f"policy names must be present and unique: {names}")
    return problems


def bucket_problems(buckets: Any, *, low_ms: float = 5, high_ms: float = 10_000,
                    max_ratio: float = 2.5, min_count: int = 10) -> list[str]:
    """Duration buckets span ``low_ms``..``high_ms`` finely enough for p50/p90/p99."""
    if not isinstance(buckets, list) or not buckets:
        return [f"no bucket list: {buckets!r}"]
    values = [_duration_ms(b) for b in buckets]
    bad = [b for b, v in zip(buckets, values) if v is None]
    if bad:
        return [f"not Go duration strings (a bare number means nanoseconds): {bad}"]
    problems = []
    if values != sorted(set(values)):
        problems.append(f"buckets must be strictly increasing: {buckets}")
    if values[0] > low_ms:
        problems.append(f"lowest bucket {buckets[0]} is above {low_ms} ms: fast calls blur")
    if values[-1] < high_ms:
        problems.append(f"highest bucket {buckets[-1]} is below {high_ms} ms: slow p99 is lost")
    if len(values) < min_count:
        problems.append(f"only {len(values)} buckets, want {min_count}+")
    for lower, upper in zip(values, values[1:]):
        if lower > 0 and upper / lower > max_ratio:
            problems.append(f"gap {lower:g}ms -> {upper:g}ms is wider than x{max_ratio}")
    return problems


def sampling_order_problems(cfg: Config) -> list[str]:
    """Trace backends get only tail-sampled spans; metric connectors get every span."""
    pipelines = {k: v or {} for k, v in _pipelines(cfg).items()}
    connectors = _defined(cfg, "connectors")

    def samples(pipeline_id: str) -> bool:
        processors = pipelines[pipeline_id].get("processors") or []
        return any(_type(p) == "tail_sampling" for p in processors)

    # Walk from the pipelines fed by the otlp receiver, through connectors, remembering
    # whether the spans have passed a tail_sampling processor on the way.
    start = [
        (p, False) for p, v in pipelines.items()
        if any(_type(r) == "otlp" for r in v.get("receivers") or [])
    ]
    seen: set[tuple[str, bool]] = set()
    fed: dict[str, set[bool]] = {}  # exporter or connector -> "sampled?" of what reaches it
    while start:
        pipeline_id, sampled = start.pop()
        if (pipeline_id, sampled) in seen:
            continue
        seen.add((pipeline_id, sampled))
        sampled = sampled or samples(pipeline_id)
        for exporter in pipelines[pipeline_id].get("exporters") or []:
            fed.setdefault(exporter, set()).add(sampled)
            if exporter in connectors:
                start.extend(
                    (p, sampled)
                    for p, v in pipelines.items()
                    if exporter in (v.get("receivers") or [])
                )
    problems = []
    for backend in TRACE_BACKENDS:
        if backend not in fed:
            problems.append(f"{backend}: no OTLP spans reach it")
        elif fed[backend] != {True}:
            problems.append(f"{backend}: receives spans that skipped tail_sampling")
    for connector in METRIC_CONNECTORS:
        if connector not in fed:
            problems.append(f"{connector}: no OTLP spans reach it")
        elif fed[connector] != {False}:
            problems.append(f"{connector}: is fed after tail_sampling, so its metrics are sampled")
    return problems


def collector_port_problems(cfg: Config, compose: Config) -> list[str]:
    """The collector listens on 0.0.0.0 and compose publishes its ports one to one."""
    problems = []
    service = (compose.get("services") or {}).get(COLLECTOR_SERVICE)
    if not service:
        return [f"compose has no {COLLECTOR_SERVICE} service"]
    published = _published(service)
    protocols = _otlp_receiver(cfg).get("protocols") or {}
    endpoints = {f"otlp {proto}": (p or {}).get("endpoint", "") for proto, p in protocols.items()}
    for name, value in (cfg.get("exporters") or {}).items():
        if _type(name) == "prometheus":
            endpoints[name] = (value or {}).get("endpoint", "")
    for name, value in (cfg.get("extensions") or {}).items():
        if _type(name) == "health_check":
            endpoints[name] = (value or {}).get("endpoint", "")
    for what, endpoint in endpoints.items():
        if not endpoint:
            problems.append(f"{what}: no explicit endpoint (the default binds localhost)")
            continue
        if _host(endpoint) not in ("0.0.0.0", ""):
            problems.append(f"{what}: {endpoint} is not reachable from outside the container")
        port = _port(endpoint)
        if published.get(port) != port:
            problems.append(f"{what}: port {port} is not published as {port}:{port} in compose")
    wanted = {"otlp grpc": 4317, "otlp http": 4318}
    for what, port in wanted.items():
        if what not in endpoints or not endpoints[what] or _port(endpoints[what]) != port:
            problems.append(f"{what}: expected on port {port}, got {endpoints.get(what)!r}")
    # The file these tests read is the one the container runs.
    command = " ".join(_command(service))
    config_path = re.search(r"--config[= ](\S+)", command)
    mounted = {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes") or []}
    if not config_path or mounted.get(config_path.group(1)) != "./otel-collector.yaml":
        problems.append(f"{COLLECTOR_SERVICE} does not run ./otel-collector.yaml ({command})")
    return problems


def scrape_problems(cfg: Config, prometheus: Config, compose: Config) -> list[str]:
    """deploy/prometheus.yml scrapes the collector's prometheus exporter, and compose mounts it."""
    ports = [
        _port((v or {}).get("endpoint", ""))
        for k, v in (cfg.get("exporters") or {}).items()
        if _type(k) == "prometheus"
    ]
    if not ports:
        return ["no prometheus exporter"]
    targets = {
        str(target)
        for job in prometheus.get("scrape_configs") or []
        for static in job.get("static_configs") or []
        for target in static.get("targets") or []
    }
    problems = [
        f"deploy/prometheus.yml does not scrape {COLLECTOR_SERVICE}:{port}"
        for port in ports
        if f"{COLLECTOR_SERVICE}:{port}" not in targets
    ]
    service = (compose.get("services") or {}).get("prometheus") or {}
    volumes = [str(v) for v in service.get("volumes") or []]
    mount = "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml"
    if not any(v.startswith(mount) for v in volumes):
        problems.append(f"compose's prometheus does not mount deploy/prometheus.yml ({volumes})")
    if 9090 not in _published(service):
        problems.append("compose does not publish Prometheus' UI port 9090")
    return problems


def ui_problems(readme: str, compose: Config) -> list[str]:
    """The README says where the Jaeger and Zipkin UIs are, and compose publishes them there."""
    services = compose.get("services") or {}
    problems = []
    for name, port in (("jaeger", 16686), ("zipkin", 9411), ("prometheus", 9090)):
        if _published(services.get(name) or {}).get(port) != port:
            problems.append(f"compose does not publish {name} on {port}:{port}")
    for needle in ("docker compose up", "localhost:16686", "localhost:9411"):
        if needle not in readme:
            problems.append(f"README.md does not mention {needle!r}")
    return problems


def clstock_service_problems(cfg: Config, compose: Config) -> list[str]:
    """The ClStock services run under opentelemetry-instrument and export to the collector."""
    services = compose.get("services") or {}
    protocols = _otlp_receiver(cfg).get("protocols") or {}
    http_port = _port((protocols.get("http") or {}).get("endpoint", ""))
    endpoint = f"http://{COLLECTOR_SERVICE}:{http_port}"
    problems = []
    for name, (app, service_name, port) in CLSTOCK_SERVICES.items():
        service = services.get(name)
        if not service:
            problems.append(f"compose has no {name} service")
            continue
        command = _command(service)
        if command[:1] != ["opentelemetry-instrument"]:
            problems.append(f"{name}: not launched by opentelemetry-instrument: {command}")
        if app not in command or "--port" not in command or str(port) not in command:
            problems.append(f"{name}: expected uvicorn {app} on port {port}: {command}")
        if _published(service).get(port) != port:
            problems.append(f"{name}: port {port} not published")
        env = _environment(service)
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != endpoint:
            problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT is not {endpoint}")
        if env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") != "http/protobuf":
            problems.append(f"{name}: sends {env['OTEL_EXPORTER_OTLP_PROTOCOL']} to the http port")
        if env.get("OTEL_SERVICE_NAME") != service_name:
            problems.append(f"{name}: OTEL_SERVICE_NAME is not {service_name}")
        build = service.get("build") or {}
        if not isinstance(build, dict) or build.get("dockerfile") != "deploy/Dockerfile":
            problems.append(f"{name}: not built from deploy/Dockerfile")
    links = {
        ("data-service", "CLSTOCK_YAHOO_URL"): "http://market-replay:8001",
        ("api", "CLSTOCK_DATA_SERVICE_URL"): "http://data-service:8002",
    }
    for (name, var), url in links.items():
        if _environment(services.get(name) or {}).get(var) != url:
            problems.append(f"{name}: {var} is not {url}")
    return problems


# ------------------------------------------------------------------------------- tests


def test_pipelines_name_only_defined_components(collector):
    """Every pipeline names only receivers, processors, exporters and connectors that exist."""
    assert reference_problems(collector) == []


def test_every_defined_component_is_used(collector):
    """No receiver, processor, exporter, connector or extension is defined and left unused."""
    assert unused_problems(collector) == []


def test_connectors_join_pipelines_of_matching_signals(collector):
    """Each connector is an exporter in one pipeline and a receiver in another, signals matching."""
    assert connector_problems(collector) == []


def test_memory_limiter_first_and_batch_last(collector):
    """memory_limiter opens every pipeline; batch closes it, after tail_sampling."""
    assert processor_order_problems(collector) == []


def test_tail_sampling_keeps_errors_slow_and_a_share(collector):
    """tail_sampling keeps ERROR traces, slow traces and a probabilistic share of the rest."""
    assert tail_sampling_problems(collector) == []


def test_spanmetrics_buckets_resolve_ms_to_seconds(collector):
    """spanmetrics' explicit buckets cover 5 ms..10 s with no gap wider than x2.5 (usable p99)."""
    histogram = collector["connectors"]["spanmetrics"]["histogram"]
    assert histogram.get("unit", "ms") == "ms"
    assert bucket_problems(histogram["explicit"]["buckets"]) == []


def test_servicegraph_buckets_resolve_ms_to_seconds(collector):
    """servicegraph's latency buckets are Go durations covering 5 ms..10 s."""
    buckets = collector["connectors"]["servicegraph"]["latency_histogram_buckets"]
    assert bucket_problems(buckets) == []


def test_metrics_see_all_spans_and_backends_get_sampled_traces(collector):
    """spanmetrics/servicegraph are fed before tail_sampling; Jaeger/Zipkin only after it."""
    assert sampling_order_problems(collector) == []


def test_collector_ports_match_compose(collector, compose):
    """The receiver and exporter ports bind 0.0.0.0 and compose publishes them one to one."""
    assert collector_port_problems(collector, compose) == []


def test_prometheus_scrapes_the_exporter_port(collector, prometheus, compose):
    """deploy/prometheus.yml scrapes the collector's prometheus exporter port."""
    assert scrape_problems(collector, prometheus, compose) == []


def test_readme_and_compose_agree_on_ui_ports(compose):
    """The README points at Jaeger on 16686 and Zipkin on 9411, where compose publishes them."""
    assert ui_problems(README.read_text(encoding="utf-8"), compose) == []


def test_clstock_services_run_instrumented_into_the_collector(collector, compose):
    """api, data-service and market-replay run under opentelemetry-instrument into :4318."""
    assert clstock_service_problems(collector, compose) == []


def test_dockerfile_installs_the_distro_and_runs_instrumented():
    """The image installs the distro and ClStock's requirements and starts instrumented."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert re.search(r"pip install \. -r clstock/requirements\.txt", text)
    assert re.search(r"^WORKDIR /app/clstock", text, re.MULTILINE)
    cmd = r'^CMD \["opentelemetry-instrument", "uvicorn", "app\.main:app"'
    assert re.search(cmd, text, re.MULTILINE)


# --------------------------------------------- the checkers flag deliberately broken copies


def _undefined_exporter(c: Config) -> None:
    c["service"]["pipelines"]["traces/sampled"]["exporters"].append("otlp/tempo")


def _unused_processor(c: Config) -> None:
    c["processors"]["attributes/unused"] = {"actions": []}


def _connector_never_received(c: Config) -> None:
    c["service"]["pipelines"]["metrics"]["receivers"].remove("servicegraph")


def _spanmetrics_into_traces(c: Config) -> None:
    c["service"]["pipelines"]["traces/sampled"]["receivers"].append("spanmetrics")


def _batch_first(c: Config) -> None:
    c["service"]["pipelines"]["metrics"]["processors"] = ["batch", "memory_limiter"]


def _batch_before_sampling(c: Config) -> None:
    c["service"]["pipelines"]["traces/sampled"]["processors"] = [
        "memory_limiter", "batch", "tail_sampling",
    ]


def _no_error_policy(c: Config) -> None:
    policies = c["processors"]["tail_sampling"]["policies"]
    policies[:] = [p for p in policies if p["type"] != "status_code"]


def _coarse_buckets(c: Config) -> None:
    c["connectors"]["spanmetrics"]["histogram"]["explicit"]["buckets"] = ["10ms", "1s", "10s"]


def _zipkin_unsampled(c: Config) -> None:
    c["service"]["pipelines"]["traces/all"]["exporters"].append("zipkin")


def _spanmetrics_sampled(c: Config) -> None:
    c["service"]["pipelines"]["traces/all"]["exporters"].remove("spanmetrics")
    c["service"]["pipelines"]["traces/sampled"]["exporters"].append("spanmetrics")


def _receiver_on_localhost(c: Config) -> None:
    c["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "localhost:4318"


def _receiver_moved_port(c: Config) -> None:
    c["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = "0.0.0.0:4319"


def _exporter_moved_port(c: Config) -> None:
    c["exporters"]["prometheus"]["endpoint"] = "0.0.0.0:9464"


def _plain_uvicorn(c: Config) -> None:
    c["services"]["api"]["command"] = ["uvicorn", "app.main:app", "--port", "8000"]


def _grpc_endpoint(c: Config) -> None:
    c["services"]["data-service"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] = (
        "http://otel-collector:4317"
    )


def _jaeger_unpublished(c: Config) -> None:
    c["services"]["jaeger"]["ports"] = []


BROKEN_COLLECTOR: list[tuple[Callable[[Config], None], Callable[[Config], list[str]]]] = [
    (_undefined_exporter, reference_problems),
    (_unused_processor, unused_problems),
    (_connector_never_received, connector_problems),
    (_spanmetrics_into_traces, connector_problems),
    (_batch_first, processor_order_problems),
    (_batch_before_sampling, processor_order_problems),
    (_no_error_policy, tail_sampling_problems),
    (_coarse_buckets, lambda c: bucket_problems(
        c["connectors"]["spanmetrics"]["histogram"]["explicit"]["buckets"])),
    (_zipkin_unsampled, sampling_order_problems),
    (_spanmetrics_sampled, sampling_order_problems),
]


@pytest.mark.parametrize(
    ("breakage", "checker"),
    BROKEN_COLLECTOR,
    ids=[b.__name__.strip("_") for b, _ in BROKEN_COLLECTOR],
)
def test_checker_flags_broken_collector_copy(collector, breakage, checker):
    """Each collector checker reports a deliberately broken copy of otel-collector.yaml."""
    assert checker(collector) == []
    broken = copy.deepcopy(collector)
    breakage(broken)
    assert checker(broken) != []


BROKEN_DEPLOYMENT: list[tuple[str, Callable[[Config], None], str]] = [
    ("collector", _receiver_on_localhost, "ports"),
    ("collector", _receiver_moved_port, "ports"),
    ("collector", _exporter_moved_port, "scrape"),
    ("compose", _plain_uvicorn, "services"),
    ("compose", _grpc_endpoint, "services"),
    ("compose", _jaeger_unpublished, "ui"),
]


@pytest.mark.parametrize(
    ("target", "breakage", "check"), BROKEN_DEPLOYMENT,
    ids=[b.__name__.strip("_") for _, b, _ in BROKEN_DEPLOYMENT],
)
def test_checker_flags_broken_deployment_copy(collector, compose, prometheus, target, breakage,
                                              check):
    """Each deployment checker reports a broken copy of the collector or compose file."""
    readme = "docker compose up ... http://localhost:16686 ... http://localhost:9411"
    checks = {
        "ports": lambda cfg, cmp: collector_port_problems(cfg, cmp),
        "scrape": lambda cfg, cmp: scrape_problems(cfg, prometheus, cmp),
        "services": lambda cfg, cmp: clstock_service_problems(cfg, cmp),
        "ui": lambda cfg, cmp: ui_problems(readme, cmp),
    }
    assert checks[check](collector, compose) == []
    docs = {"collector": copy.deepcopy(collector), "compose": copy.deepcopy(compose)}
    breakage(docs[target])
    assert checks[check](docs["collector"], docs["compose"]) != []


def test_checker_flags_readme_without_ui_addresses(compose):
    """ui_problems reports a README that does not say where Jaeger and Zipkin are."""
    assert ui_problems("docker compose up; http://localhost:16686", compose) != []


def test_duration_parser_rejects_bare_numbers():
    """Bare numbers are nanoseconds to the collector, so the bucket check refuses them."""
    assert _duration_ms("1500ms") == 1500
    assert _duration_ms("1m30s") == 90_000
    assert _duration_ms(5) is None
    assert bucket_problems([1, 2, 3]) != []
