"""``clstock-otel demo``: ClStock's three services, traced, driven through every workflow.

It starts an embedded OTLP receiver, then the market replay (standing in for Yahoo),
the data service and the API, each under ``opentelemetry-instrument`` and exporting to
that receiver. The API fetches through the data service, so its traces cross all three
services. It calls every endpoint once (one of them failing on purpose), waits for the
spans and stops everything. Then it prints each workflow's trace as a tree
(:func:`~clstock_otel_distro.tools.trace_tree.render_trace`, as ``clstock-otel collect``
does) and the report of every span received, computed the way ``clstock-otel report``
does from the OTLP JSON lines file the spans were written to (``spans.jsonl`` beside
the service logs), and writes the same report as a page
(:mod:`~clstock_otel_distro.tools.html_report`) whose path it prints last::

    clstock-otel demo        # exit status 0 when every call and every trace was as expected
    clstock-otel demo --keep # keep the services' logs and spans.jsonl, and say where

The logs, the span file and the services' temporary files (yfinance's caches) live
in one temporary directory, removed at the end unless ``--keep`` is given or the demo
failed (then the logs are what one looks at, and the demo says where they are).
Outside a ClStock checkout it says so in one line and exits with status 2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from clstock_otel_distro.tools.devstack import ServiceProcess, find_app_dir
from clstock_otel_distro.tools.html_report import write_html_report
from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver
from clstock_otel_distro.tools.report import build_report, format_report
from clstock_otel_distro.tools.spanfile import SpanFileWriter, read_spans
from clstock_otel_distro.tools.trace_tree import render_trace, supports_unicode

__all__ = ["DEFAULT_HTML", "WORKFLOWS", "Call", "run_demo"]

DEFAULT_HTML = "clstock-otel-demo.html"
"""Where the HTML report goes by default: in the current directory, replaced each run."""
# ClStock's variable for yfinance's cache directory (clstock/utils/yahoo_session.py):
# without it each service makes its own temporary directory, which a SIGTERM'd
# service never removes.
_YFINANCE_CACHE_ENV = "CLSTOCK_YFINANCE_CACHE_DIR"


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

# The longest trace (recommendations) has well under this many spans; the cap only
# keeps a misbehaving run readable.
_MAX_TREE_SPANS = 150

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
        and str(s.attributes.get("http.route", "")).startswith("/api/v1")
    ]


def _match_calls(calls: Sequence[Call], spans: Sequence[ReceivedSpan]) -> list[ReceivedSpan | None]:
    """The API server span of each call (None if it never arrived), matched in order."""
    unused = sorted(_server_spans(spans), key=lambda s: s.start_time_unix_nano)
    matched: list[ReceivedSpan | None] = []
    for call in calls:
        path = call.path.split("?", 1)[0]
        found = next(
            (
                s
                for s in unused
                if s.attributes.get("http.request.method", call.method) == call.method
                and s.attributes.get("url.path", path) == path
            ),
            None,
        )
        if found is not None:
            unused.remove(found)
        matched.append(found)
    return matched


def run_demo(
    app_dir: Path | None = None,
    out: TextIO = sys.stdout,
    *,
    keep: bool = False,
    html: str | os.PathLike[str] | None = None,
    err: TextIO = sys.stderr,
) -> int:
    """Run the demo; 0 when every call answered as expected and its trace arrived.

    2 (after one line on ``err``) when there is no ClStock checkout to run.
    """
    try:
        app_dir = find_app_dir(app_dir)
    except FileNotFoundError as error:
        print(
            f"clstock-otel demo: {error}; run it in a clone of clstock-otel-distro "
            "or pass --app-dir",
            file=err,
        )
        return 2
    html_path = Path(html if html is not None else DEFAULT_HTML)
    logs = Path(tempfile.mkdtemp(prefix="clstock-demo-"))
    status: int | None = None
    try:
        status = _run(app_dir, logs, html_path, keep, out)
        return status
    finally:
        if keep or status != 0:
            why = "as asked (--keep)" if keep else "to look at, as the demo failed"
            print(f"\nlogs and spans.jsonl kept in {logs} {why}", file=out)
        else:
            shutil.rmtree(logs, ignore_errors=True)
            print(f"\nlogs removed ({logs}); --keep keeps them", file=out)


def _run(app_dir: Path, logs: Path, html_path: Path, keep: bool, out: TextIO) -> int:
    spans_file = logs / "spans.jsonl"
    print(
        f"ClStock demo: services from {app_dir}, logs in {logs}"
        + ("" if keep else " (removed at the end)"),
        file=out,
    )
    # The services' own temporary files (yfinance's caches) go with the logs.
    service_tmp = logs / "tmp"
    service_tmp.mkdir()
    started: list[ServiceProcess] = []
    statuses: list[int] = []
    # The receiver stops (inner) before the file closes (outer): no span is left unwritten.
    with SpanFileWriter(spans_file, mode="w") as writer, OTLPReceiver() as receiver:
        # The same file `clstock-otel collect --output` writes, written the same way.
        receiver.add_listener(writer.write)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "2000",
            "TMPDIR": str(service_tmp),
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
            data = launch(
                "data",
                "app.data_service:app",
                {"CLSTOCK_YAHOO_URL": replay.url,
                 _YFINANCE_CACHE_ENV: str(service_tmp / "yfinance-cache")},
            )
            api = launch("api", "app.main:app", {"CLSTOCK_DATA_SERVICE_URL": data.url})
            print(
                f"  market replay {replay.url}   data service {data.url}   API {api.url}\n",
                file=out,
            )
            failures = 0
            for call in WORKFLOWS:
                status, elapsed_ms, _ = _request(api.url, call)
                statuses.append(status)
                ok = status == call.expected_status
                failures += not ok
                mark = "ok " if ok else "BAD"
                print(
                    f"  [{mark}] {call.workflow:<18} {call.method:<4} {call.path:<52} "
                    f"-> {status} in {elapsed_ms:7.1f} ms",
                    file=out,
                )
            try:
                receiver.wait_until(
                    lambda s: all(m is not None for m in _match_calls(WORKFLOWS, s)), timeout=20
                )
            except TimeoutError as error:
                print(f"\nnot every trace arrived: {error}", file=out)
                failures += 1
        finally:
            for service in reversed(started):
                service.stop()
        spans = receiver.spans()  # after shutdown: everything the services flushed
    missing = _print_traces(spans, statuses, out)
    _print_report(spans_file, html_path, out)
    return 1 if failures or missing else 0


def _print_traces(spans: Sequence[ReceivedSpan], statuses: Sequence[int], out: TextIO) -> int:
    """Print each workflow's trace as a tree; returns how many never arrived."""
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    print(f"\n{len(spans)} spans in {len(traces)} traces received. The workflows:", file=out)
    ascii_only = not supports_unicode(out)
    missing = 0
    for call, status, root in zip(WORKFLOWS, statuses, _match_calls(WORKFLOWS, spans)):
        print(f"\n== {call.workflow}: {call.method} {call.path} -> {status}", file=out)
        if root is None:
            missing += 1
            print("   its trace never arrived", file=out)
            continue
        tree = render_trace(traces[root.trace_id], ascii_only=ascii_only, max_spans=_MAX_TREE_SPANS)
        print(tree, file=out)
    return missing


def _print_report(spans_file: Path, html_path: Path, out: TextIO) -> None:
    spans, skipped = read_spans(spans_file, warn=lambda message: print(message, file=out))
    report = build_report(spans, skipped_lines=skipped)
    print(f"\n== report of every span received ({spans_file}):\n", file=out)
    print(format_report(report), file=out)
    try:
        written = write_html_report(spans, html_path, report=report, source=str(spans_file))
    except OSError as exc:
        print(f"\ncannot write the HTML report {html_path}: {exc.strerror or exc}", file=out)
        return
    print(f"\nHTML report (open it in a browser): {written}", file=out)
