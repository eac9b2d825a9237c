"""deploy/rules: the recording and alerting rules, run through promtool.

* ``promtool check rules`` accepts every rules file;
* ``promtool test rules`` passes the unit tests in deploy/rules/tests/, which feed
  synthetic series shaped like the collector's;
* every alert has a unit test where it fires and one where it stays quiet, and those
  tests are known to bite: a deliberately broken copy of a rule makes them fail;
* the series the rules read are the ones otel-collector.yaml emits (histogram unit
  suffix, spanmetrics dimensions), and deploy/prometheus.yml and docker-compose.yml load
  the rules.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, REPO
from tests.deploy.promql import exprs_of_rules, label_names, metric_names, run_promtool

RULES_DIR = DEPLOY / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yml"))
ALERTS_FILE = RULES_DIR / "clstock-alerts.rules.yml"
COLLECTOR_YAML = REPO / "otel-collector.yaml"
PROMETHEUS_YAML = DEPLOY / "prometheus.yml"
COMPOSE_YAML = REPO / "docker-compose.yml"
RULES_MOUNT = "/etc/prometheus/rules"

# The labels spanmetrics puts on every series, besides its configured dimensions
# (connector README, "each metric will have at least the following dimensions").
SPANMETRICS_LABELS = {"service_name", "span_name", "span_kind", "status_code"}
# What the collector's prometheus exporter appends for a histogram's unit.
UNIT_SUFFIX = {"ms": "milliseconds", "s": "seconds"}

Doc = dict[str, Any]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rule_groups() -> list[Doc]:
    return [group for path in RULE_FILES for group in _load(path)["groups"]]


@pytest.fixture(scope="module")
def unit_tests() -> list[Doc]:
    return [test for path in TEST_FILES for test in _load(path)["tests"]]


# ---------------------------------------------------------------------------- checkers


def coverage_problems(groups: list[Doc], tests: list[Doc]) -> list[str]:
    """Every alert has a test case where it fires and one where it does not."""
    alerts = {rule["alert"] for g in groups for rule in g["rules"] if "alert" in rule}
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    problems = [f"{name}: no test case where it fires" for name in sorted(alerts - firing)]
    problems += [f"{name}: no test case where it stays quiet" for name in sorted(alerts - quiet)]
    problems += [f"{name}: tested, but no such alert" for name in sorted((firing | quiet) - alerts)]
    return problems


def annotation_problems(groups: list[Doc]) -> list[str]:
    """Every alert says how urgent it is and what is wrong."""
    problems = []
    for group in groups:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            if (rule.get("labels") or {}).get("severity") not in ("page", "ticket"):
                problems.append(f"{rule['alert']}: severity must be page or ticket")
            if not (rule.get("annotations") or {}).get("summary"):
                problems.append(f"{rule['alert']}: no summary annotation")
            if not rule.get("for"):
                problems.append(f"{rule['alert']}: no `for`: one bad scrape would page")
    return problems


def collector_series_problems(groups: list[Doc], collector: Doc) -> list[str]:
    """The span-metric names and labels the rules read are those the collector emits."""
    spanmetrics = collector["connectors"]["spanmetrics"]
    unit = (spanmetrics.get("histogram") or {}).get("unit", "ms")
    dimensions = {d["name"].replace(".", "_") for d in spanmetrics.get("dimensions") or []}
    allowed_labels = SPANMETRICS_LABELS | dimensions | {"le", "job", "instance"}
    problems = []
    for name, expr in exprs_of_rules(groups).items():
        metrics = metric_names(expr)
        for metric in metrics:
            match = re.fullmatch(r"traces_span_metrics_duration_(\w+?)_(bucket|sum|count)", metric)
            if match and match.group(1) != UNIT_SUFFIX[unit]:
                problems.append(f"{name}: reads {metric}, but the collector's unit is {unit}")
        if any(m.startswith("traces_span_metrics_") for m in metrics):
            for label in sorted(label_names(expr) - allowed_labels):
                problems.append(f"{name}: label {label} is not a spanmetrics label or dimension")
    return problems


def loading_problems(prometheus: Doc, compose: Doc) -> list[str]:
    """deploy/prometheus.yml loads the rules from where docker-compose.yml mounts them."""
    problems = []
    rule_files = prometheus.get("rule_files") or []
    if f"{RULES_MOUNT}/*.rules.yml" not in rule_files:
        problems.append(f"deploy/prometheus.yml rule_files {rule_files} misses {RULES_MOUNT}")
    volumes = (compose["services"].get("prometheus") or {}).get("volumes") or []
    if not any(str(v).startswith(f"./deploy/rules:{RULES_MOUNT}") for v in volumes):
        problems.append(f"compose's prometheus does not mount ./deploy/rules at {RULES_MOUNT}")
    return problems


# ------------------------------------------------------------------------------- tests


def test_promtool_checks_every_rules_file(promtool):
    """`promtool check rules` accepts every rules file (syntax, PromQL, templates)."""
    assert RULE_FILES, "no deploy/rules/*.rules.yml"
    code, output = run_promtool(promtool, "check", "rules", *map(str, RULE_FILES))
    assert code == 0, output


def test_promtool_unit_tests_pass(promtool):
    """`promtool test rules` passes every unit test on synthetic series."""
    assert TEST_FILES, "no deploy/rules/tests/*.test.yml"
    code, output = run_promtool(promtool, "test", "rules", *map(str, TEST_FILES))
    assert code == 0, output
    assert "SUCCESS" in output


def test_unit_tests_load_every_rules_file():
    """The unit tests load every rules file, so no rule goes untested."""
    loaded = {
        (path.parent / name).resolve()
        for path in TEST_FILES
        for name in _load(path).get("rule_files") or []
    }
    assert loaded == {path.resolve() for path in RULE_FILES}


def test_every_alert_fires_in_one_case_and_stays_quiet_in_another(rule_groups, unit_tests):
    """Each alert has a unit test where it fires and one where it does not."""
    assert coverage_problems(rule_groups, unit_tests) == []


def test_every_alert_has_severity_summary_and_duration(rule_groups):
    """Each alert carries severity (page/ticket), a summary and a `for` duration."""
    assert annotation_problems(rule_groups) == []


def test_rules_read_the_series_the_collector_emits(rule_groups):
    """Histogram unit suffix and spanmetrics labels match otel-collector.yaml."""
    assert collector_series_problems(rule_groups, _load(COLLECTOR_YAML)) == []


def test_prometheus_loads_the_rules():
    """deploy/prometheus.yml loads deploy/rules, which docker-compose.yml mounts."""
    assert loading_problems(_load(PROMETHEUS_YAML), _load(COMPOSE_YAML)) == []


def test_prometheus_config_is_valid_and_loads_every_rule(promtool, tmp_path, rule_groups):
    """`promtool check config` accepts deploy/prometheus.yml and, through its rule_files
    (pointed at deploy/rules, as compose mounts them), finds every rule."""
    config = _load(PROMETHEUS_YAML)
    config["rule_files"] = [
        str(RULES_DIR / Path(pattern).name) for pattern in config.get("rule_files") or []
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, output = run_promtool(promtool, "check", "config", str(path))
    assert code == 0, output
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", output))
    assert found == sum(len(g["rules"]) for g in rule_groups), output


def test_readme_lists_every_alert(rule_groups):
    """The README's alert table names every alert the rules define, and no other."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Alerts", 1)[1].split("\n### ", 1)[0]
    alerts = {rule["alert"] for g in rule_groups for rule in g["rules"] if "alert" in rule}
    listed = set(re.findall(r"`((?:ClStock|Otel)[A-Za-z]+)`", section))
    assert listed == alerts


# --------------------------------------------- the unit tests bite: broken rules fail


def _replace_in_alert(alert: str, old: str, new: str) -> Callable[[Doc], None]:
    def breakage(doc: Doc) -> None:
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    assert old in rule["expr"], (alert, old)
                    rule["expr"] = rule["expr"].replace(old, new)
                    return
        raise AssertionError(f"no alert {alert}")
    breakage.__name__ = f"{alert}: {old!r} -> {new!r}"
    return breakage


BROKEN_ALERTS = [
    # A threshold too high: the firing case no longer fires.
    _replace_in_alert("ClStockRouteLatencyHigh", "> 1000", "> 5000"),
    # No exclusion of training: the quiet case's slow /train fires.
    _replace_in_alert("ClStockRouteLatencyHigh", '{http_route!~".*/(train|batch/predict)"}', ""),
    # No traffic guard: the idle failing route fires.
    _replace_in_alert("ClStockRouteErrorRateHigh", "clstock:route_requests:rate5m > 0.05",
                      "clstock:route_requests:rate5m >= 0"),
    _replace_in_alert("ClStockServiceEdgeErrorRateHigh", "> 0.05\n", "> 0.5\n"),
    # Without the past-traffic condition, nothing tells "stopped" from "never started".
    _replace_in_alert("ClStockServiceTrafficStopped", "offset 10m", "offset 80m"),
    _replace_in_alert("OtelCollectorDown", "== 0", "== 1"),
    _replace_in_alert("OtelCollectorExportFailing", "[5m]", "[30s]"),
    _replace_in_alert("ClStockSdkDroppingSpans", '{error_type!=""}', ""),
]


@pytest.mark.parametrize("breakage", BROKEN_ALERTS, ids=[b.__name__ for b in BROKEN_ALERTS])
def test_unit_tests_fail_on_a_broken_alert(promtool, tmp_path, breakage):
    """A deliberately broken copy of an alert fails `promtool test rules`."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    alerts = rules / ALERTS_FILE.name
    doc = _load(alerts)
    breakage(doc)
    alerts.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tests = [str(rules / "tests" / path.name) for path in TEST_FILES]
    code, output = run_promtool(promtool, "check", "rules", str(alerts))
    assert code == 0, output  # still valid PromQL: the unit tests must catch it
    code, output = run_promtool(promtool, "test", "rules", *tests)
    assert code != 0, f"the unit tests did not notice {breakage.__name__}"


def test_coverage_checker_flags_an_untested_alert(rule_groups, unit_tests):
    """coverage_problems reports an alert with no quiet case and one never tested."""
    firing_only = [
        {**t, "alert_rule_test": [c for c in t.get("alert_rule_test") or [] if c.get("exp_alerts")]}
        for t in unit_tests
    ]
    assert any("stays quiet" in p for p in coverage_problems(rule_groups, firing_only))
    extra = [*rule_groups, {"name": "x", "rules": [{"alert": "Untested", "expr": "vector(1)"}]}]
    assert "Untested: no test case where it fires" in coverage_problems(extra, unit_tests)


def test_series_checker_flags_a_unit_or_dimension_mismatch(rule_groups):
    """collector_series_problems reports rules read in the wrong unit or undeclared labels."""
    collector = _load(COLLECTOR_YAML)
    collector["connectors"]["spanmetrics"]["histogram"]["unit"] = "s"
    assert collector_series_problems(rule_groups, collector) != []
    collector = _load(COLLECTOR_YAML)
    collector["connectors"]["spanmetrics"]["dimensions"] = [{"name": "http.request.method"}]
    assert any("http_route" in p for p in collector_series_problems(rule_groups, collector))


def test_promql_helpers_read_names_and_labels():
    """metric_names and label_names pull metrics and labels, not functions or strings."""
    expr = ('histogram_quantile(0.99, sum by (le, http_route) '
            '(rate(x_bucket{a="b",c!~"d{e}"}[5m]))) > 1 '
            'and on (service_name) y:rate5m offset 5m unless up == 0')
    assert metric_names(expr) == {"x_bucket", "y:rate5m", "up"}
    assert label_names(expr) == {"le", "http_route", "a", "c", "service_name"}
