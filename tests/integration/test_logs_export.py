"""OTEL_LOGS_EXPORTER=otlp end to end: ClStock's log records reach the receiver, correlated.

ClStock logs with the standard library only; under ``opentelemetry-instrument`` the
logging instrumentation hands every record to the SDK's LoggerProvider, which exports
it by OTLP with the trace and span ids of the request being served and its severity.
"""

from __future__ import annotations

import requests
import yaml

from clstock_otel_distro.tools.otlp_data import ReceivedLog
from tests.conftest import REPO_ROOT
from tests.integration.conftest import otlp_env, trace_of, wait_for_route

SERVICE = "clstock-logs"
# OTLP severity numbers (logs data model): INFO is 9, WARN 13.
SEVERITY_INFO = 9
SEVERITY_WARN = 13


def _ours(logs: list[ReceivedLog]) -> list[ReceivedLog]:
    return [log for log in logs if log.service_name == SERVICE]


def _body_starts(logs: list[ReceivedLog], prefix: str) -> list[ReceivedLog]:
    return [log for log in logs if str(log.body).startswith(prefix)]


def test_log_records_carry_their_request_trace(launch, receiver, replay):
    """A fetch's INFO and an empty download's WARNING arrive with their span's ids."""
    api = launch("logs-api", env={**otlp_env(receiver), "OTEL_SERVICE_NAME": SERVICE,
                                  "OTEL_LOGS_EXPORTER": "otlp", "CLSTOCK_YAHOO_URL": replay.url})
    assert requests.get(api.url + "/api/v1/predict/7203", timeout=30).status_code == 200
    assert requests.get(api.url + "/api/v1/predict/6502", timeout=30).status_code == 502

    spans = wait_for_route(receiver, "/api/v1/predict/{symbol}", service=SERVICE, count=2)
    logs = receiver.wait_for_logs(
        lambda logs: _body_starts(_ours(logs), "Fetching data for 6502")
        and _body_starts(_ours(logs), "No data returned for 6502"), timeout=15)
    servers = [s for s in spans if s.kind == "SERVER" and s.service_name == SERVICE
               and s.attributes.get("http.route") == "/api/v1/predict/{symbol}"]
    by_status = {s.attributes["http.response.status_code"]: s for s in servers}

    for symbol, status in (("7203", 200), ("6502", 502)):
        trace = {s.span_id: s for s in trace_of(spans, by_status[status])}
        [fetching] = _body_starts(_ours(logs), f"Fetching data for {symbol}")
        assert fetching.trace_id == by_status[status].trace_id
        # Logged inside StockDataProvider.get_stock_data: that span's id.
        assert trace[fetching.span_id].name == "StockDataProvider.get_stock_data"
        assert (fetching.severity_text, fetching.severity_number) == ("INFO", SEVERITY_INFO)
        assert fetching.scope_name == "data.stock_data"

    [empty] = _body_starts(_ours(logs), "No data returned for 6502")
    assert empty.trace_id == by_status[502].trace_id
    assert (empty.severity_text, empty.severity_number) == ("WARN", SEVERITY_WARN)


def test_collector_has_a_logs_pipeline():
    """otel-collector.yaml takes OTLP logs in: a logs pipeline from the otlp receiver."""
    config = yaml.safe_load((REPO_ROOT / "otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    logs = [pipeline for name, pipeline in pipelines.items() if name.split("/")[0] == "logs"]
    assert logs, f"no logs pipeline among {sorted(pipelines)}"
    for pipeline in logs:
        assert "otlp" in pipeline["receivers"]
        assert pipeline["processors"][0] == "memory_limiter"
        assert pipeline["exporters"], "a logs pipeline that exports nowhere"
        for exporter in pipeline["exporters"]:
            assert exporter in config["exporters"], exporter
