"""deploy/k8s: the two-tier collector layout and the Kubernetes manifests.

No collector or cluster runs here. As in tests/distro/test_collector_config.py, each
rule the layout relies on is a checker returning problems; the tests run the checkers
on the real files and expect none, then on deliberately broken copies and expect some.

The rules: both collector configurations are well formed; the agent routes every span
by trace ID to the gateways and decides nothing itself; the gateways' span metrics and
service graph see every span before tail sampling, with the same connectors and
policies as otel-collector.yaml; and the manifests fit together (ConfigMaps, config
paths, environment variables, Service selectors and ports, the headless Service the
agents resolve, ClStock launched under opentelemetry-instrument into its node's agent).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, REPO
from tests.distro import test_collector_config as single_collector
from tests.distro.test_collector_config import (
    connector_problems,
    processor_order_problems,
    reference_problems,
    tail_sampling_problems,
    unused_problems,
)

K8S = DEPLOY / "k8s"
AGENT_CONFIG = K8S / "collector" / "agent.yaml"
GATEWAY_CONFIG = K8S / "collector" / "gateway.yaml"
SCRAPE_CONFIG = K8S / "prometheus-scrape.yml"
ALERTS = DEPLOY / "rules" / "clstock-alerts.rules.yml"
COLLECTOR_YAML = REPO / "otel-collector.yaml"
COMPOSE_YAML = REPO / "docker-compose.yml"

# Connectors and processors that need whole traces, or every span of the fleet: they
# belong on the gateways, never on an agent that sees part of a trace.
WHOLE_TRACE_COMPONENTS = ("tail_sampling", "spanmetrics", "servicegraph", "groupbytrace")
# What the gateways must configure exactly as the single collector does, so that
# deploy/rules and deploy/grafana apply to both layouts.
SHARED_WITH_SINGLE = (("connectors", "spanmetrics"), ("connectors", "servicegraph"),
                      ("processors", "tail_sampling"))
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")
ENV_REFERENCE = re.compile(r"\$\{env:(\w+)\}")
K8S_ENV_REFERENCE = re.compile(r"\$\((\w+)\)")

Doc = dict[str, Any]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ the deployment


class Deployment:
    """deploy/k8s as kustomize would build it: the manifests and the generated ConfigMaps."""

    def __init__(self, root: Path) -> None:
        self.kustomization: Doc = _load(root / "kustomization.yaml")
        self.docs: list[Doc] = [
            doc
            for resource in self.kustomization.get("resources") or []
            for doc in yaml.safe_load_all((root / resource).read_text(encoding="utf-8"))
            if doc
        ]
        # ConfigMap name -> {key: the file it holds}
        self.config_maps: dict[str, dict[str, Path]] = {}
        for generator in self.kustomization.get("configMapGenerator") or []:
            files = {}
            for entry in generator.get("files") or []:
                key, _, path = entry.rpartition("=")
                files[key or Path(path).name] = root / path
            self.config_maps[generator["name"]] = files
        for doc in self.docs:
            if doc.get("kind") == "ConfigMap":
                self.config_maps[doc["metadata"]["name"]] = {k: None for k in doc.get("data", {})}

    def of_kind(self, *kinds: str) -> list[Doc]:
        return [d for d in self.docs if d.get("kind") in kinds]

    def workloads(self) -> list[Doc]:
        return self.of_kind(*WORKLOAD_KINDS)

    def workload(self, name: str) -> Doc | None:
        return next((w for w in self.workloads() if w["metadata"]["name"] == name), None)

    def service(self, name: str) -> Doc | None:
        return next((s for s in self.of_kind("Service") if s["metadata"]["name"] == name), None)

    def selected(self, service: Doc) -> list[Doc]:
        """The workloads whose pods a Service selects."""
        selector = (service.get("spec") or {}).get("selector") or {}
        return [
            w for w in self.workloads()
            if selector and selector.items() <= _pod_labels(w).items()
        ]


def _pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]


def _pod_labels(workload: Doc) -> dict[str, str]:
    return (_pod(workload).get("metadata") or {}).get("labels") or {}


def _containers(workload: Doc) -> list[Doc]:
    return _pod(workload)["spec"].get("containers") or []


def _env(container: Doc) -> dict[str, str]:
    """Container env, fieldRefs as ``<fieldRef:path>``."""
    env = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env[item["name"]] = f"<fieldRef:{ref}>"
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    return K8S_ENV_REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _container_port(workload: Doc, port: int | str) -> int | None:
    """The container port a Service targetPort (number or name) lands on."""
    for container in _containers(workload):
        for item in container.get("ports") or []:
            if port in (item.get("name"), item.get("containerPort")):
                return int(item["containerPort"])
    return None


def _config_arg(container: Doc) -> str | None:
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        match = re.fullmatch(r"--config=(\S+)", str(arg))
        if match:
            return match.group(1)
    return None


def _mounted_config(deployment: Deployment, workload: Doc, container: Doc) -> Path | None:
    """The repository file a collector container runs, through its ConfigMap mount."""
    path = _config_arg(container)
    if not path:
        return None
    volumes = {v["name"]: v for v in _pod(workload)["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        directory = mount["mountPath"].rstrip("/")
        if path.startswith(directory + "/"):
            config_map = (volumes.get(mount["name"]) or {}).get("configMap") or {}
            return (deployment.config_maps.get(config_map.get("name")) or {}).get(
                path[len(directory) + 1:])
    return None


def _port(endpoint: str) -> int:
    return int(str(endpoint).rsplit(":", 1)[1].split("/")[0])


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _of_type(cfg: Doc, kind: str, type_: str) -> dict[str, Doc]:
    return {k: v or {} for k, v in (cfg.get(kind) or {}).items() if _type(k) == type_}


def _pipelines(cfg: Doc) -> dict[str, Doc]:
    return {k: v or {} for k, v in cfg["service"]["pipelines"].items()}


def _env_references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _env_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _env_references(item)
    elif isinstance(value, str):
        yield from ENV_REFERENCE.findall(value)


@pytest.fixture(scope="module")
def agent() -> Doc:
    return _load(AGENT_CONFIG)


@pytest.fixture(scope="module")
def gateway() -> Doc:
    return _load(GATEWAY_CONFIG)


@pytest.fixture(scope="module")
def k8s() -> Deployment:
    return Deployment(K8S)


# ---------------------------------------------------------------------------- checkers


def wellformed_problems(cfg: Doc) -> list[str]:
    """The single-collector checks: components defined and used, connectors, order."""
    return [
        *reference_problems(cfg), *unused_problems(cfg), *connector_problems(cfg),
        *processor_order_problems(cfg),
    ]


def agent_problems(cfg: Doc) -> list[str]:
    """The agent sends every span by trace ID to the gateways and decides nothing itself."""
    problems = []
    balancers = _of_type(cfg, "exporters", "loadbalancing")
    trace_pipelines = {k: v for k, v in _pipelines(cfg).items() if _type(k) == "traces"}
    if not trace_pipelines:
        problems.append("no traces pipeline")
    for pipeline_id, pipeline in trace_pipelines.items():
        exporters = pipeline.get("exporters") or []
        if not exporters or any(e not in balancers for e in exporters):
            problems.append(f"{pipeline_id}: spans must leave only through loadbalancing "
                            f"({exporters})")
    for name, balancer in balancers.items():
        if balancer.get("routing_key", "traceID") != "traceID":
            problems.append(f"{name}: routing_key {balancer.get('routing_key')} is not traceID")
        resolver = balancer.get("resolver") or {}
        if not (resolver.get("dns") or {}).get("hostname") and not resolver.get("k8s"):
            problems.append(f"{name}: needs a dns (hostname) or k8s resolver")
    used = {
        component
        for pipeline in _pipelines(cfg).values()
        for kind in ("processors", "exporters", "receivers")
        for component in pipeline.get(kind) or []
    }
    for component in sorted(used):
        if _type(component) in WHOLE_TRACE_COMPONENTS:
            problems.append(f"{component} on the agent sees partial traces: it belongs on "
                            f"the gateways")
    return problems


def gateway_problems(cfg: Doc, single: Doc) -> list[str]:
    """Metrics from every span before sampling; the single collector's connectors and policies."""
    backends = tuple(
        exporter
        for pipeline_id, pipeline in _pipelines(cfg).items()
        if _type(pipeline_id) == "traces"
        for exporter in pipeline.get("exporters") or []
        if exporter not in (cfg.get("connectors") or {}) and _type(exporter) != "debug"
    )
    # The single collector's walk, with this file's trace backends.
    saved = single_collector.TRACE_BACKENDS
    single_collector.TRACE_BACKENDS = backends
    try:
        problems = single_collector.sampling_order_problems(cfg)
    finally:
        single_collector.TRACE_BACKENDS = saved
    if not backends:
        problems.append("no trace backend")
    problems += tail_sampling_problems(cfg)
    for kind, name in SHARED_WITH_SINGLE:
        if (cfg.get(kind) or {}).get(name) != (single.get(kind) or {}).get(name):
            problems.append(f"{kind}.{name} differs from otel-collector.yaml's: the rules and "
                            f"dashboard assume the same series")
    for name, exporter in _of_type(cfg, "exporters", "prometheus").items():
        labels = exporter.get("const_labels") or {}
        if not any(ENV_REFERENCE.search(str(v)) for v in labels.values()):
            problems.append(f"{name}: no per-gateway const_labels: gateways' series would clash")
    return problems


def manifest_problems(k8s: Deployment) -> list[str]:
    """Every manifest names itself; workloads mount ConfigMaps that exist; Services select."""
    problems = []
    for doc in k8s.docs:
        named = (doc.get("metadata") or {}).get("name")
        if not doc.get("apiVersion") or not doc.get("kind") or not named:
            problems.append(f"manifest without apiVersion, kind or name: {str(doc)[:80]}")
    for workload in k8s.workloads():
        name = workload["metadata"]["name"]
        selector = workload["spec"].get("selector", {}).get("matchLabels") or {}
        if not selector or not selector.items() <= _pod_labels(workload).items():
            problems.append(f"{name}: selector {selector} does not match its pod labels")
        for volume in _pod(workload)["spec"].get("volumes") or []:
            config_map = (volume.get("configMap") or {}).get("name")
            if config_map and config_map not in k8s.config_maps:
                problems.append(f"{name}: volume {volume['name']} names unknown ConfigMap "
                                f"{config_map}")
        for container in _containers(workload):
            env = _env(container)
            defined: list[str] = []
            for item in container.get("env") or []:
                for ref in K8S_ENV_REFERENCE.findall(str(item.get("value", ""))):
                    if ref not in defined:
                        problems.append(f"{name}: env {item['name']} uses $({ref}) before it "
                                        f"is defined")
                defined.append(item["name"])
            if _config_arg(container):
                config = _mounted_config(k8s, workload, container)
                if config is None or not config.exists():
                    problems.append(f"{name}: --config={_config_arg(container)} is not a "
                                    f"mounted ConfigMap key")
                    continue
                for ref in sorted(set(_env_references(_load(config))) - set(env)):
                    problems.append(f"{name}: {config.name} reads ${{env:{ref}}}, which the "
                                    f"container does not set")
    for service in k8s.of_kind("Service"):
        name = service["metadata"]["name"]
        selected = k8s.selected(service)
        if not selected:
            problems.append(f"Service {name} selects no workload")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for workload in selected:
                if _container_port(workload, target) is None:
                    problems.append(f"Service {name}: targetPort {target} is no container "
                                    f"port of {workload['metadata']['name']}")
    return problems


def _runs(k8s: Deployment, config_path: Path) -> list[tuple[Doc, Doc]]:
    """The (workload, container) pairs that run a collector configuration file."""
    return [
        (w, c) for w in k8s.workloads() for c in _containers(w)
        if _mounted_config(k8s, w, c) == config_path
    ]


def tier_wiring_problems(k8s: Deployment, agent: Doc, gateway: Doc) -> list[str]:
    """The agents' resolver finds the gateways: headless Service, same port all along."""
    agents, gateways = _runs(k8s, AGENT_CONFIG), _runs(k8s, GATEWAY_CONFIG)
    problems = []
    if len(agents) != 1 or agents[0][0]["kind"] != "DaemonSet":
        problems.append("the agent config must run in exactly one DaemonSet (one per node)")
    if len(gateways) != 1 or gateways[0][0]["kind"] != "Deployment":
        problems.append("the gateway config must run in exactly one Deployment")
    if problems:
        return problems
    (_, agent_container), (gateway_workload, _) = agents[0], gateways[0]
    grpc = ((gateway["receivers"]["otlp"]["protocols"]).get("grpc") or {}).get("endpoint", "")
    gateway_port = _port(grpc) if grpc else None
    env = _env(agent_container)
    for name, balancer in _of_type(agent, "exporters", "loadbalancing").items():
        dns = (balancer.get("resolver") or {}).get("dns") or {}
        hostname = ENV_REFERENCE.sub(lambda m: env.get(m.group(1), "?"), dns.get("hostname", ""))
        hostname = _expand(hostname, env)
        service = k8s.service(hostname.split(".")[0])
        if service is None:
            problems.append(f"{name}: resolves {hostname!r}, which is no Service here")
            continue
        if service["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: Service {hostname.split('.')[0]} is not headless: DNS "
                            f"would give one virtual IP, not the gateways")
        if hostname.count(".") and not hostname.endswith(".svc.cluster.local"):
            problems.append(f"{name}: {hostname} is not a cluster DNS name")
        if gateway_workload not in k8s.selected(service):
            problems.append(f"{name}: Service {service['metadata']['name']} does not select "
                            f"the gateways")
        port = dns.get("port", 4317)
        ports = {p["port"]: p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        if port not in ports:
            problems.append(f"{name}: port {port} is not a port of the headless Service")
        elif _container_port(gateway_workload, ports[port]) != gateway_port:
            problems.append(f"{name}: port {port} reaches container port "
                            f"{_container_port(gateway_workload, ports[port])}, not the "
                            f"gateways' OTLP gRPC receiver ({gateway_port})")
    return problems


def clstock_problems(k8s: Deployment, agent: Doc, compose: Doc) -> list[str]:
    """ClStock runs under opentelemetry-instrument and exports to its node's agent."""
    problems = []
    apps = [
        (w, c) for w in k8s.workloads() for c in _containers(w)
        if (c.get("command") or [])[:1] == ["opentelemetry-instrument"]
    ]
    if not apps:
        return ["no workload runs ClStock under opentelemetry-instrument"]
    http = (agent["receivers"]["otlp"]["protocols"].get("http") or {}).get("endpoint", "")
    agent_workloads = [w for w, _ in _runs(k8s, AGENT_CONFIG)]
    images = {i["name"] for i in k8s.kustomization.get("images") or []}
    for workload, container in apps:
        name = workload["metadata"]["name"]
        command = container["command"]
        if command[1:3] != ["uvicorn", "app.main:app"]:
            problems.append(f"{name}: expected `opentelemetry-instrument uvicorn app.main:app`, "
                            f"got {command}")
        env = _env(container)
        if not env.get("OTEL_SERVICE_NAME"):
            problems.append(f"{name}: OTEL_SERVICE_NAME is not set")
        if env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") != "http/protobuf":
            problems.append(f"{name}: the agent's http port wants http/protobuf")
        match = re.fullmatch(r"http://([\w-]+):(\d+)", env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
        service = k8s.service(match.group(1)) if match else None
        if service is None:
            problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT is not http://<Service>:<port>")
            continue
        if service["spec"].get("internalTrafficPolicy") != "Local":
            problems.append(f"{name}: {service['metadata']['name']} is not the node-local agent "
                            f"(internalTrafficPolicy: Local)")
        if not set(map(id, k8s.selected(service))) & set(map(id, agent_workloads)):
            problems.append(f"{name}: {service['metadata']['name']} does not select the agents")
        ports = {p["port"]: p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        port = int(match.group(2))
        if port not in ports or not http or any(
            _container_port(w, ports[port]) != _port(http) for w in agent_workloads
        ):
            problems.append(f"{name}: port {port} does not reach the agent's OTLP HTTP receiver")
        if container["image"].split(":")[0] not in images:
            problems.append(f"{name}: image {container['image']} is not set in kustomization")
    pinned = compose["services"][single_collector.COLLECTOR_SERVICE]["image"]
    for workload in k8s.workloads():
        for container in _containers(workload):
            if "opentelemetry-collector" in container["image"] and container["image"] != pinned:
                problems.append(f"{workload['metadata']['name']}: {container['image']} is not "
                                f"the collector docker-compose.yml pins ({pinned})")
    return problems


def scrape_problems(scrape: Doc, k8s: Deployment, alerts: Doc) -> list[str]:
    """Prometheus scrapes the gateways' metrics (labels honoured) and both tiers' telemetry."""
    up = next(r["expr"] for g in alerts["groups"] for r in g["rules"]
              if r.get("alert") == "OtelCollectorDown")
    job_regex = re.search(r'job=~"([^"]+)"', up).group(1)
    problems = []
    ports = {
        p.get("name") for w in k8s.workloads() for c in _containers(w) for p in c.get("ports") or []
    }
    jobs = {job["job_name"]: job for job in scrape.get("scrape_configs") or []}
    for name, job in jobs.items():
        if not re.fullmatch(job_regex, name):
            problems.append(f"job {name}: OtelCollectorDown ({job_regex}) does not watch it")
        for relabel in job.get("relabel_configs") or []:
            by_port = "__meta_kubernetes_pod_container_port_name" in relabel.get(
                "source_labels", [])
            if by_port and relabel["regex"] not in ports:
                problems.append(f"job {name}: keeps port {relabel['regex']}, which no "
                                f"container has")
    gateway_metrics = [
        j for j in jobs.values()
        if any(r.get("regex") == "metrics" for r in j.get("relabel_configs") or [])
    ]
    if not gateway_metrics or not all(j.get("honor_labels") for j in gateway_metrics):
        problems.append("the gateways' metrics need a job with honor_labels: true (job and "
                        "instance are the ClStock processes', set by the exporter)")
    return problems


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", [AGENT_CONFIG, GATEWAY_CONFIG], ids=lambda p: p.name)
def test_collector_configs_are_well_formed(path):
    """Both tiers pass the single collector's checks (defined, used, connected, ordered)."""
    assert wellformed_problems(_load(path)) == []


def test_agent_routes_every_span_by_trace_id(agent):
    """The agent's spans leave only through loadbalancing by traceID; no sampling there."""
    assert agent_problems(agent) == []


def test_gateway_derives_metrics_before_tail_sampling(gateway):
    """spanmetrics/servicegraph see every span, the backend only sampled ones; same as single."""
    assert gateway_problems(gateway, _load(COLLECTOR_YAML)) == []


def test_manifests_parse_and_reference_what_exists(k8s):
    """Manifests parse; ConfigMaps, config paths, env vars, selectors and ports all resolve."""
    assert len(k8s.docs) >= 6
    assert manifest_problems(k8s) == []


def test_agents_resolve_the_gateways_through_a_headless_service(k8s, agent, gateway):
    """The loadbalancing resolver's name is a headless Service on the gateways' OTLP port."""
    assert tier_wiring_problems(k8s, agent, gateway) == []


def test_clstock_runs_instrumented_into_its_node_agent(k8s, agent):
    """ClStock: opentelemetry-instrument uvicorn app.main:app, OTLP/HTTP to the node's agent."""
    assert clstock_problems(k8s, agent, _load(COMPOSE_YAML)) == []


def test_prometheus_scrape_config_matches_the_pods(k8s):
    """The scrape jobs keep existing port names, honour labels and are watched by an alert."""
    assert scrape_problems(_load(SCRAPE_CONFIG), k8s, _load(ALERTS)) == []


# --------------------------------------------- the checkers flag broken copies


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A breakage that sets a dotted path (list indexes as numbers) to value."""
    def breakage(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    breakage.__name__ = f"{path}={value!r}"
    return breakage


def _agent_tail_sampling(cfg: Doc) -> None:
    cfg["processors"]["tail_sampling"] = {"policies": []}
    cfg["service"]["pipelines"]["traces"]["processors"].insert(1, "tail_sampling")


def _agent_bypasses_balancer(cfg: Doc) -> None:
    cfg["service"]["pipelines"]["traces"]["exporters"].append("otlp/gateway")


def _gateway_samples_first(cfg: Doc) -> None:
    pipelines = cfg["service"]["pipelines"]
    pipelines["traces/all"]["processors"] = ["memory_limiter", "tail_sampling", "batch"]
    pipelines["traces/sampled"]["processors"] = ["memory_limiter", "batch"]


BROKEN_CONFIGS: list[tuple[str, Callable[[Doc], None], Callable[[Doc], list[str]]]] = [
    ("agent", _set("exporters.loadbalancing.routing_key", "service"), agent_problems),
    ("agent", _agent_tail_sampling, agent_problems),
    ("agent", _agent_bypasses_balancer, agent_problems),
    ("agent", _set("exporters.loadbalancing.resolver", {}), agent_problems),
    ("gateway", _gateway_samples_first,
     lambda c: gateway_problems(c, _load(COLLECTOR_YAML))),
    ("gateway", _set("connectors.spanmetrics.histogram.unit", "s"),
     lambda c: gateway_problems(c, _load(COLLECTOR_YAML))),
    ("gateway", _set("exporters.prometheus.const_labels", {}),
     lambda c: gateway_problems(c, _load(COLLECTOR_YAML))),
]


@pytest.mark.parametrize(
    ("tier", "breakage", "checker"), BROKEN_CONFIGS,
    ids=[f"{t}-{b.__name__.strip('_')}" for t, b, _ in BROKEN_CONFIGS],
)
def test_checker_flags_broken_tier_config(agent, gateway, tier, breakage, checker):
    """Each tier checker reports a deliberately broken copy of its configuration."""
    cfg = copy.deepcopy({"agent": agent, "gateway": gateway}[tier])
    assert checker(cfg) == []
    breakage(cfg)
    assert checker(cfg) != []


def _doc(k8s: Deployment, kind: str, name: str) -> Doc:
    return next(d for d in k8s.docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _clusterip_gateways(k8s: Deployment) -> None:
    del _doc(k8s, "Service", "otel-gateway-headless")["spec"]["clusterIP"]


def _resolver_wrong_port(k8s: Deployment) -> None:
    _doc(k8s, "Service", "otel-gateway-headless")["spec"]["ports"][0]["targetPort"] = "health"


def _unknown_config_map(k8s: Deployment) -> None:
    volumes = _pod(_doc(k8s, "DaemonSet", "otel-agent"))["spec"]["volumes"]
    volumes[0]["configMap"]["name"] = "otel-agent-conf"


def _missing_env(k8s: Deployment) -> None:
    container = _containers(_doc(k8s, "Deployment", "otel-gateway"))[0]
    container["env"] = [e for e in container["env"] if e["name"] != "POD_NAME"]


def _selector_typo(k8s: Deployment) -> None:
    _doc(k8s, "Service", "otel-agent")["spec"]["selector"] = {"app.kubernetes.io/name": "agent"}


def _plain_uvicorn(k8s: Deployment) -> None:
    container = _containers(_doc(k8s, "Deployment", "clstock-api"))[0]
    container["command"] = ["opentelemetry-instrument", "gunicorn", "app.main:app"]


def _cluster_wide_agent(k8s: Deployment) -> None:
    del _doc(k8s, "Service", "otel-agent")["spec"]["internalTrafficPolicy"]


def _grpc_port_for_http(k8s: Deployment) -> None:
    container = _containers(_doc(k8s, "Deployment", "clstock-api"))[0]
    for item in container["env"]:
        if item["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT":
            item["value"] = "http://otel-agent:4317"


def _agent_as_deployment(k8s: Deployment) -> None:
    _doc(k8s, "DaemonSet", "otel-agent")["kind"] = "Deployment"


BROKEN_MANIFESTS: list[tuple[Callable[[Deployment], None], str]] = [
    (_clusterip_gateways, "wiring"),
    (_resolver_wrong_port, "wiring"),
    (_agent_as_deployment, "wiring"),
    (_unknown_config_map, "manifests"),
    (_missing_env, "manifests"),
    (_selector_typo, "manifests"),
    (_plain_uvicorn, "clstock"),
    (_cluster_wide_agent, "clstock"),
    (_grpc_port_for_http, "clstock"),
]


@pytest.mark.parametrize(("breakage", "check"), BROKEN_MANIFESTS,
                         ids=[b.__name__.strip("_") for b, _ in BROKEN_MANIFESTS])
def test_checker_flags_broken_manifests(agent, gateway, breakage, check):
    """Each manifest checker reports a deliberately broken copy of deploy/k8s."""
    compose = _load(COMPOSE_YAML)
    checks = {
        "wiring": lambda k: tier_wiring_problems(k, agent, gateway),
        "manifests": manifest_problems,
        "clstock": lambda k: clstock_problems(k, agent, compose),
    }
    k8s = Deployment(K8S)
    assert checks[check](k8s) == []
    breakage(k8s)
    assert checks[check](k8s) != []


def test_scrape_checker_flags_unhonoured_labels_and_unwatched_jobs(k8s):
    """scrape_problems reports a gateway job without honor_labels and an unwatched job name."""
    scrape, alerts = _load(SCRAPE_CONFIG), _load(ALERTS)
    assert scrape_problems(scrape, k8s, alerts) == []
    broken = copy.deepcopy(scrape)
    broken["scrape_configs"][0]["honor_labels"] = False
    assert scrape_problems(broken, k8s, alerts) != []
    broken = copy.deepcopy(scrape)
    broken["scrape_configs"][0]["job_name"] = "gateways"
    assert scrape_problems(broken, k8s, alerts) != []
