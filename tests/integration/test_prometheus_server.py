"""A real Prometheus scrapes the traced API; its PromQL answers agree with the span report.

The API runs under ``opentelemetry-instrument`` with ``OTEL_METRICS_EXPORTER=prometheus``
(announced to Prometheus by a file_sd target file) while its traces go by OTLP to the
test's receiver. Prometheus (Debian's ``prometheus``, started here on 127.0.0.1 with a
generated configuration and a temporary TSDB) scrapes it every second. After a fixed
traffic mix, PromQL over the scrapes just before and just after the traffic gives, per
API route and per ClStock operation, the p50/p90/p99 latency, the error rate and the
throughput; ``clstock-otel report --json`` over the same traffic's spans gives the same
figures from the spans. Counts and error rates must be equal, each quantile in the same
histogram bucket as the report's nearest-rank quantile or the next one, and the
throughput equal up to the scrape interval's uncertainty about the traffic window.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clstock_otel_distro.tools.devstack import free_port
from clstock_otel_distro.tools.spanfile import SpanFileWriter
from tests.integration.conftest import otlp_env

PROMETHEUS = shutil.which("prometheus")
SCRAPE_INTERVAL_S = 1.0
SERVICE = "clstock-prometheus"
JOB = "clstock"
QUANTILES = (0.5, 0.9, 0.99)
CLSTOCK_OTEL = Path(sys.executable).parent / "clstock-otel"

# The fixed traffic mix, sent in this order, one request at a time.
TRAFFIC = (
    [("/api/v1/predict/7203", 200), ("/health", 200), ("/health", 200)] * 10
    + [("/api/v1/recommendations?top_n=3", 200), ("/api/v1/predict/6502", 502)] * 4
    + [("/health", 200), ("/api/v1/predict/7203", 200)] * 5
)
ROUTE_OF = {
    "/api/v1/predict/7203": "/api/v1/predict/{symbol}",
    "/api/v1/predict/6502": "/api/v1/predict/{symbol}",
    "/api/v1/recommendations?top_n=3": "/api/v1/recommendations",
    "/health": "/health",
}
HTTP_METRIC = "http_server_request_duration_seconds"
OPERATION_METRIC = "clstock_operation_duration_seconds"
OPERATION_LABEL = "clstock_operation_name"


def _require_prometheus() -> str:
    if PROMETHEUS is None:
        message = "needs Prometheus: apt-get install prometheus (Debian package prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PROMETHEUS


class PrometheusServer:
    """A Prometheus process on 127.0.0.1 scraping the file_sd targets in one directory."""

    def __init__(self, binary: str, workdir: Path, targets: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config = workdir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps({
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S:g}s",
                       "scrape_timeout": f"{SCRAPE_INTERVAL_S:g}s"},
            "scrape_configs": [{
                "job_name": JOB,
                "file_sd_configs": [{"files": [str(targets / "*.json")],
                                     "refresh_interval": "1s"}],
            }],
        }))
        self.command = [binary, f"--config.file={config}",
                        f"--storage.tsdb.path={workdir / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--log.level=warn"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"Prometheus not ready: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def query(self, promql: str) -> list[dict]:
        """An instant query through the HTTP API; the result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def last_scrape(self) -> float | None:
        """When Prometheus last scraped the API (seconds since the epoch)."""
        # timestamp() of the bare selector: a comparison would give the evaluation time.
        result = self.query(f'timestamp(up{{job="{JOB}"}})')
        return float(result[0]["value"][1]) if result else None

    def wait_for_scrape_after(self, moment: float, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            scraped = self.last_scrape()
            if scraped is not None and scraped > moment:
                return scraped
            time.sleep(0.2)
        raise AssertionError(f"no scrape after {moment}: {self.log_path.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[tuple[PrometheusServer, Path]]:
    """A Prometheus scraping whatever announces itself in its targets directory."""
    binary = _require_prometheus()
    workdir = tmp_path_factory.mktemp("prometheus")
    targets = workdir / "targets"
    targets.mkdir()
    server = PrometheusServer(binary, workdir, targets).start()
    yield server, targets
    server.stop()


def _delta(metric: str, by: str, t0: float, t1: float, selector: str = "") -> str:
    """PromQL: ``sum by (by)`` of a counter's increase between the scrapes at t0 and t1.

    A series born after t0 (the first 502, the first recommendations) counts from zero.
    """
    at1 = f"sum by ({by}) ({metric}{{{selector}}} @ {t1:.3f})"
    at0 = f"sum by ({by}) ({metric}{{{selector}}} @ {t0:.3f})"
    return f"({at1} - ({at0} or {at1} * 0))"


def _by_label(result: list[dict], label: str) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


def _bucket_index(bounds: list[float], seconds: float) -> int:
    """The histogram bucket holding ``seconds``: (bounds[i-1], bounds[i]]; len(bounds) = +Inf."""
    return bisect.bisect_left(bounds, seconds)


def _bounds(server: PrometheusServer, metric: str) -> list[float]:
    les = {sample["metric"]["le"] for sample in server.query(f"{metric}_bucket")}
    return sorted(float(le) for le in les if le != "+Inf")


def _report(spans, path: Path) -> dict:
    with SpanFileWriter(path, mode="w") as writer:
        writer.write(spans)
    result = subprocess.run([str(CLSTOCK_OTEL), "report", str(path), "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def _assert_same_bucket(what: str, bounds: list[float], promql_s: float, report_ms: float):
    prom_bucket = _bucket_index(bounds, promql_s)
    report_bucket = _bucket_index(bounds, report_ms / 1000)
    assert abs(prom_bucket - report_bucket) <= 1, (
        f"{what}: PromQL {promql_s * 1000:.2f} ms (bucket {prom_bucket}) vs report "
        f"{report_ms:.2f} ms (bucket {report_bucket}); bounds {bounds}"
    )


def test_promql_agrees_with_span_report(prometheus, launch, receiver, replay, tmp_path):
    """p50/p90/p99, error rate and throughput per route and per operation: PromQL = report."""
    started = time.monotonic()
    server, targets = prometheus
    api = launch("prometheus-api", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": SERVICE, "CLSTOCK_YAHOO_URL": replay.url,
        "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
        "OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR": str(targets),
    })
    # A scrape with the API's request metrics in it (its readiness probes): the baseline.
    deadline = time.monotonic() + 20
    while not server.query(f'{HTTP_METRIC}_count{{job="{JOB}"}}'):
        assert time.monotonic() < deadline, server.log_path.read_text()[-2000:]
        time.sleep(0.2)
    t0 = server.wait_for_scrape_after(time.time())

    traffic_start_ns = time.time_ns()
    sent = Counter()
    errors = Counter()
    for path, status in TRAFFIC:
        answer = requests.get(api.url + path, timeout=30)
        assert answer.status_code == status, (path, answer.text[:300])
        sent[ROUTE_OF[path]] += 1
        errors[ROUTE_OF[path]] += answer.status_code >= 500
    t1 = server.wait_for_scrape_after(time.time())

    # The same traffic's spans (the readiness probes' started before it).
    receiver.wait_for_spans(lambda spans: sum(
        1 for s in spans if s.kind == "SERVER" and s.service_name == SERVICE
        and s.start_time_unix_nano >= traffic_start_ns) >= len(TRAFFIC), timeout=15)
    spans = [s for s in receiver.spans()
             if s.service_name == SERVICE and s.start_time_unix_nano >= traffic_start_ns]
    report = _report(spans, tmp_path / "traffic.jsonl")
    operations = {op["name"]: op for op in report["operations"] if op["service"] == SERVICE}

    # Requests and errors per route: exactly what was sent, in both.
    counts = _by_label(server.query(_delta(f"{HTTP_METRIC}_count", "http_route", t0, t1)),
                       "http_route")
    assert counts == {route: float(n) for route, n in sent.items()}
    failed = _by_label(server.query(_delta(f"{HTTP_METRIC}_count", "http_route", t0, t1,
                                           'http_response_status_code=~"5.."')), "http_route")
    for route, n in sent.items():
        op = operations[f"GET {route}"]
        assert op["count"] == n
        promql_error_rate = failed.get(route, 0.0) / counts[route]
        assert promql_error_rate == pytest.approx(errors[route] / n)
        assert op["error_rate"] == pytest.approx(promql_error_rate, abs=1e-6)

    # Throughput: the scrapes bracket the traffic, so PromQL's window is the report's plus
    # at most about two scrape intervals.
    window = report["window"]["seconds"]
    total_rate = server.query(
        f"{_delta(f'{HTTP_METRIC}_count', 'job', t0, t1)} / {t1 - t0:.3f}")
    [promql_rate] = _by_label(total_rate, "job").values()
    report_rate = len(TRAFFIC) / window
    assert report_rate * window / (window + 2 * SCRAPE_INTERVAL_S + 0.5) <= promql_rate
    assert promql_rate <= report_rate * 1.01

    # Latency quantiles per route, from the buckets' increase over the traffic.
    bounds = _bounds(server, HTTP_METRIC)
    for q in QUANTILES:
        promql = (f"histogram_quantile({q}, "
                  f"{_delta(f'{HTTP_METRIC}_bucket', 'le, http_route', t0, t1)})")
        quantiles = _by_label(server.query(promql), "http_route")
        for route in sent:
            report_ms = operations[f"GET {route}"][f"p{round(q * 100)}_ms"]
            _assert_same_bucket(f"p{q * 100:g} {route}", bounds, quantiles[route], report_ms)

    # The same for every ClStock operation's clstock.operation.duration.
    op_counts = _by_label(server.query(_delta(f"{OPERATION_METRIC}_count", OPERATION_LABEL,
                                              t0, t1)), OPERATION_LABEL)
    assert {"StockPredictor.get_top_recommendations",
            "StockDataProvider.get_stock_data"} <= set(op_counts), op_counts
    op_bounds = _bounds(server, OPERATION_METRIC)
    for q in QUANTILES:
        promql = (f"histogram_quantile({q}, "
                  f"{_delta(f'{OPERATION_METRIC}_bucket', f'le, {OPERATION_LABEL}', t0, t1)})")
        quantiles = _by_label(server.query(promql), OPERATION_LABEL)
        for name, count in op_counts.items():
            assert operations[name]["count"] == count, name
            report_ms = operations[name][f"p{round(q * 100)}_ms"]
            assert not math.isnan(quantiles[name]), name
            _assert_same_bucket(f"p{q * 100:g} {name}", op_bounds, quantiles[name], report_ms)

    assert time.monotonic() - started < 60, "the Prometheus test must stay under a minute"
