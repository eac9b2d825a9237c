"""``clstock-otel demo``: ClStock's three services, traced, driven through every workflow.

It starts an embedded OTLP receiver, then the market replay (standing in for Yahoo),
the data service and the API, each under ``opentelemetry-instrument`` and exporting to
that receiver. The API fetches through the data service, so its traces cross all three
services. It calls every endpoint once (one of them failing on purpose), waits for the
spans, prints what arrived, and stops everything.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from clstock_otel_distro.devstack import ServiceProcess, find_app_dir
from clstock_otel_distro.otlp_receiver import OTLPReceiver, ReceivedSpan

__all__ = ["WORKFLOWS", "Call", "run_demo"]


@dataclass(frozen=True)
class Call:
    """One request the demo makes, and the status it expects."""

    workflow: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    expected_status: int = 200


WORKFLOWS: tuple[Call, ...] = (
    Call("API request", "GET", "/api/v1/recommendations?top_n=5"),
    Call("prediction", "GET", "/api/v1/predict/7203"),
    Call("data fetch", "GET", "/api/v1/stock/6758/data?period=1y"),
    Call("async multi-fetch", "GET", "/api/v1/stocks?symbols=7203,6758,9984&period=1mo"),
    Call("batch", "POST", "/api/v1/batch/predict", {"symbols": ["7203", "6861", "8035", "9983"]}),
    Call("model training", "POST", "/api/v1/train", {"symbols": ["7203", "6758"], "period": "2y"}),
    Call("failing request", "GET", "/api/v1/predict/6502", expected_status=502),
)

_SERVICES = {
    "replay": "clstock-market-replay",
    "data": "clstock-data-service",
    "api": "clstock-api",
}


def _request(base_url: str, call: Call) -> tuple[int, float, Any]:
    data = None if call.body is None else json.dumps(call.body).encode()
    request = urllib.request.Request(
        base_url + call.path,
        data=data,
        method=call.method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, payload = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        return status, elapsed_ms, json.loads(payload)
    except ValueError:
        return status, elapsed_ms, payload.decode(errors="replace")


def _server_spans(spans: Sequence[ReceivedSpan]) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.kind == "SERVER"
        and s.service_name == _SERVICES["api"]
        and s.attributes.get("http.route", "").startswith("/api/v1")
    ]


def run_demo(app_dir: Path | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every call answered as expected and its trace arrived."""
    app_dir = find_app_dir(app_dir)
    logs = Path(tempfile.mkdtemp(prefix="clstock-demo-"))
    print(f"ClStock demo: services from {app_dir}, logs in {logs}", file=out)
    started: list[ServiceProcess] = []
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        }

        def launch(key: str, app: str, extra: dict[str, str]) -> ServiceProcess:
            service = ServiceProcess(
                _SERVICES[key],
                app,
                app_dir,
                log_path=logs / f"{_SERVICES[key]}.log",
                env={**env, "OTEL_SERVICE_NAME": _SERVICES[key], **extra},
            )
            started.append(service)
            return service.start(timeout=60)

        try:
            replay = launch("replay", "app.market_replay:app", {})
            data = launch("data", "app.data_service:app", {"CLSTOCK_YAHOO_URL": replay.url})
            api = launch("api", "app.main:app", {"CLSTOCK_DATA_SERVICE_URL": data.url})
            print(
                f"  market replay {replay.url}   data service {data.url}   API {api.url}\n",
                file=out,
            )
            failures = 0
            for call in WORKFLOWS:
                status, elapsed_ms, _ = _request(api.url, call)
                ok = status == call.expected_status
                failures += not ok
                mark = "ok " if ok else "BAD"
                print(
                    f"  [{mark}] {call.workflow:<18} {call.method:<4} {call.path:<52} "
                    f"-> {status} in {elapsed_ms:7.1f} ms",
                    file=out,
                )
            try:
                spans = receiver.wait_for_spans(
                    lambda s: len(_server_spans(s)) >= len(WORKFLOWS), timeout=20
                )
            except TimeoutError as error:
                print(f"\nnot every trace arrived: {error}", file=out)
                return 1
        finally:
            for service in reversed(started):
                service.stop()
        spans = receiver.spans()  # after shutdown: everything the services flushed
    _print_traces(spans, out)
    return 1 if failures else 0


def _print_traces(spans: Sequence[ReceivedSpan], out: TextIO) -> None:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    print(f"\n{len(spans)} spans in {len(traces)} traces received:", file=out)
    for root in sorted(_server_spans(spans), key=lambda s: s.start_time_unix_nano):
        members = traces[root.trace_id]
        services = sorted({s.service_name or "?" for s in members})
        errors = sum(1 for s in members if s.status_code == "ERROR")
        print(
            f"  {root.name:<40} {root.duration_ns / 1e6:8.1f} ms  {len(members):4d} spans"
            f"  services: {', '.join(services)}" + (f"  ERRORS: {errors}" if errors else ""),
            file=out,
        )
