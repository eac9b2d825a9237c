"""deploy/grafana: the ClStock dashboard and its provisioning.

* every panel's query parses (promtool, each query written as a recording rule);
* the queries read series that exist: recording rules defined in deploy/rules, the
  distro's own histograms under the names the collector gives them;
* the dashboard covers RED per route and per operation, the service graph, runtime
  metrics and telemetry health;
* docker-compose.yml provisions it with a Prometheus data source whose uid the panels use.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from clstock_otel_distro.semconv import CLSTOCK_OPERATION_DURATION, YFINANCE_OPERATION_DURATION
from tests.deploy.conftest import DEPLOY, REPO
from tests.deploy.promql import check_exprs, exprs_of_rules, metric_names

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "clstock.yml"
COMPOSE_YAML = REPO / "docker-compose.yml"
PROMETHEUS_YAML = DEPLOY / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "rules").glob("*.rules.yml"))

# What each part of the dashboard must show, as a metric name pattern one of the row's
# panels reads. The rows are found by the start of their title.
REQUIRED_ROWS = {
    "Requests per route": r"clstock:route_(requests|error_ratio|latency_ms)",
    "ClStock operations": r"clstock_operation_duration_seconds_",
    "Service graph": r"clstock:edge_",
    "Runtime": r"process_cpu_time_seconds_total|process_memory_usage_bytes",
    "Telemetry health": r"otelcol_|otel_sdk_",
}
# Grafana's variables, replaced by something of the same PromQL type before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
}

Doc = dict[str, Any]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def dashboard(request) -> Doc:
    return json.loads(request.param.read_text(encoding="utf-8"))


def prometheus_name(name: str, unit: str) -> str:
    """The Prometheus name the collector gives an OTLP histogram (dots out, unit suffix in)."""
    suffix = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}[unit]
    return f"{name.replace('.', '_')}_{suffix}"


def all_panels(dashboard: Doc) -> list[Doc]:
    """Every panel, rows' nested panels included, in order."""
    panels = []
    for panel in dashboard.get("panels") or []:
        panels.append(panel)
        panels.extend(panel.get("panels") or [])
    return panels


def queries(dashboard: Doc) -> dict[str, str]:
    """``{"<panel title> <refId>": expr}`` of every panel target and template query."""
    found = {}
    for panel in all_panels(dashboard):
        for target in panel.get("targets") or []:
            found[f"{panel.get('title')} {target.get('refId')}"] = target.get("expr", "")
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        # label_values(<series selector>, <label>): the selector is PromQL.
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text, re.DOTALL)
        if match:
            found[f"variable {variable.get('name')}"] = match.group(1)
    return found


def promql(expr: str) -> str:
    """The expression with Grafana's variables replaced, ready for promtool."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)  # template variables sit in regex matchers


def rows(dashboard: Doc) -> dict[str, list[Doc]]:
    """``{row title: [its panels]}``, for a dashboard of expanded rows."""
    result: dict[str, list[Doc]] = {}
    current: list[Doc] | None = None
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            current = result.setdefault(panel.get("title", ""), list(panel.get("panels") or []))
        elif current is not None:
            current.append(panel)
    return result


# ---------------------------------------------------------------------------- checkers


def structure_problems(dashboard: Doc, datasource_uid: str) -> list[str]:
    """Unique ids, a grid position and the provisioned data source on every panel."""
    problems = []
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("the dashboard needs a uid and a title")
    ids = [p.get("id") for p in all_panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids must be present and unique: {ids}")
    for panel in all_panels(dashboard):
        title = panel.get("title")
        if not {"h", "w", "x", "y"} <= set(panel.get("gridPos") or {}):
            problems.append(f"{title}: no gridPos")
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets")]
        for source in sources:
            if not isinstance(source, dict) or source.get("uid") != datasource_uid:
                problems.append(f"{title}: data source {source} is not uid {datasource_uid}")
        for target in panel.get("targets") or []:
            if not target.get("expr", "").strip():
                problems.append(f"{title} {target.get('refId')}: empty expr")
    return problems


def coverage_problems(dashboard: Doc) -> list[str]:
    """The dashboard has a row for each required part, reading the series it should."""
    found = rows(dashboard)
    problems = []
    for prefix, pattern in REQUIRED_ROWS.items():
        titles = [title for title in found if title.startswith(prefix)]
        if not titles:
            problems.append(f"no row titled {prefix}...")
            continue
        exprs = [t.get("expr", "") for p in found[titles[0]] for t in p.get("targets") or []]
        if not any(re.search(pattern, e) for e in exprs):
            problems.append(f"row {titles[0]!r}: no panel reads {pattern}")
    return problems


def recording_rule_problems(dashboard: Doc, recorded: set[str]) -> list[str]:
    """Every recording rule a panel reads (level:metric:operation) is defined."""
    return [
        f"{where}: reads {metric}, which no rule in deploy/rules records"
        for where, expr in queries(dashboard).items()
        for metric in sorted(metric_names(promql(expr)))
        if ":" in metric and metric not in recorded
    ]


def provisioning_problems(datasources: Doc, providers: Doc, compose: Doc,
                          prometheus: Doc) -> list[str]:
    """Compose mounts the provisioning; the data source reaches compose's Prometheus."""
    problems = []
    services = compose.get("services") or {}
    grafana = services.get("grafana") or {}
    volumes = [str(v) for v in grafana.get("volumes") or []]
    mount = "./deploy/grafana/provisioning:/etc/grafana/provisioning"
    if not any(v.startswith(mount) for v in volumes):
        problems.append("compose's grafana does not mount deploy/grafana/provisioning")
    paths = [(p.get("options") or {}).get("path") for p in providers.get("providers") or []]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    for path in paths:
        if mounted.get(path) != "./deploy/grafana/dashboards":
            problems.append(f"dashboard provider path {path} is not deploy/grafana/dashboards")
    sources = datasources.get("datasources") or []
    prometheus_sources = [s for s in sources if s.get("type") == "prometheus"]
    if len(prometheus_sources) != 1:
        return [*problems, f"want one prometheus data source, got {len(prometheus_sources)}"]
    url = prometheus_sources[0].get("url", "")
    match = re.fullmatch(r"http://([\w-]+):(\d+)", url)
    if not match or match.group(1) not in services:
        problems.append(f"data source url {url} is not a compose service")
    elif int(match.group(2)) not in _published_targets(services[match.group(1)]):
        problems.append(f"data source url {url}: {match.group(1)} does not listen there")
    interval = prometheus_sources[0].get("jsonData", {}).get("timeInterval")
    if interval != (prometheus.get("global") or {}).get("scrape_interval"):
        problems.append(f"data source timeInterval {interval} is not the scrape interval")
    if 3000 not in _published_targets(grafana):
        problems.append("compose does not publish Grafana on 3000")
    return problems


def _published_targets(service: Doc) -> set[int]:
    return {int(str(p).split("/")[0].split(":")[-1]) for p in service.get("ports") or []}


# ------------------------------------------------------------------------------- tests


def test_every_panel_query_parses(promtool, dashboard, tmp_path):
    """promtool parses every panel's PromQL (Grafana variables substituted)."""
    exprs = {where: promql(expr) for where, expr in queries(dashboard).items()}
    assert len(exprs) >= 20
    code, output = check_exprs(promtool, exprs, tmp_path)
    assert code == 0, output


def test_panels_are_well_formed_and_use_the_provisioned_source(dashboard):
    """Every panel has a unique id, a position, a query and the provisioned data source."""
    uid = _yaml(DATASOURCES)["datasources"][0]["uid"]
    assert structure_problems(dashboard, uid) == []


def test_dashboard_covers_red_operations_graph_runtime_and_health(dashboard):
    """Rows for RED per route, ClStock operations, service graph, runtime and telemetry health."""
    assert coverage_problems(dashboard) == []


def test_recording_rules_read_by_panels_exist(dashboard):
    """Panels read only recording rules that deploy/rules defines."""
    recorded = {
        name
        for path in RULE_FILES
        for name in exprs_of_rules(_yaml(path)["groups"])
        if ":" in name
    }
    assert recording_rule_problems(dashboard, recorded) == []


def test_distro_histograms_under_their_prometheus_names(dashboard):
    """The distro's duration histograms are read as the collector names them (unit s)."""
    names = {m for expr in queries(dashboard).values() for m in metric_names(promql(expr))}
    for instrument in (CLSTOCK_OPERATION_DURATION, YFINANCE_OPERATION_DURATION):
        base = prometheus_name(instrument, "s")
        assert {f"{base}_bucket", f"{base}_count"} <= names, base


def test_app_queue_threshold_is_the_distro_default(dashboard):
    """The app span-queue panel marks the distro's default OTEL_BSP_MAX_QUEUE_SIZE."""
    from clstock_otel_distro.config import DEFAULT_BSP_MAX_QUEUE_SIZE

    panels = [
        p for p in all_panels(dashboard)
        if any("otel_sdk_processor_span_queue_size" in t.get("expr", "")
               for t in p.get("targets") or [])
    ]
    assert len(panels) == 1
    steps = panels[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["value"] is not None] == [DEFAULT_BSP_MAX_QUEUE_SIZE]


def test_compose_provisions_grafana_with_prometheus():
    """docker-compose.yml mounts the provisioning and the data source reaches Prometheus."""
    problems = provisioning_problems(_yaml(DATASOURCES), _yaml(PROVIDERS), _yaml(COMPOSE_YAML),
                                     _yaml(PROMETHEUS_YAML))
    assert problems == []


# --------------------------------------------- the checkers flag broken copies


def test_promtool_rejects_a_broken_query(promtool, tmp_path):
    """check_exprs fails on a query with a syntax error (so the parse test can fail)."""
    code, output = check_exprs(promtool, {"ok": "up", "broken": "sum(rate(up[5m])"}, tmp_path)
    assert code != 0
    assert "broken" in output or "parse error" in output


def test_checkers_flag_a_broken_dashboard(dashboard):
    """Each dashboard checker reports a deliberately broken copy."""
    broken = copy.deepcopy(dashboard)
    panel = next(p for p in all_panels(broken) if p.get("targets"))
    panel["datasource"] = {"type": "prometheus", "uid": "elsewhere"}
    assert structure_problems(broken, "prometheus") != []

    broken = copy.deepcopy(dashboard)
    broken["panels"] = [p for p in broken["panels"] if not p.get("title", "").startswith("Runtime")]
    assert any("Runtime" in p for p in coverage_problems(broken))

    assert recording_rule_problems(dashboard, set()) != []


def test_provisioning_checker_flags_broken_compose():
    """provisioning_problems reports Grafana without its mount or pointing nowhere."""
    compose = _yaml(COMPOSE_YAML)
    datasources, providers = _yaml(DATASOURCES), _yaml(PROVIDERS)
    prometheus = _yaml(PROMETHEUS_YAML)
    broken = copy.deepcopy(compose)
    broken["services"]["grafana"]["volumes"] = []
    assert provisioning_problems(datasources, providers, broken, prometheus) != []
    moved = copy.deepcopy(datasources)
    moved["datasources"][0]["url"] = "http://prometheus:9091"
    assert provisioning_problems(moved, providers, compose, prometheus) != []
