"""The bad inputs a new user tries, end to end: ClStock under ``opentelemetry-instrument
uvicorn`` exporting to a real receiver, its log read as an operator would.

- configured targets whose module does not exist: one warning per variable, naming it
  and its value, once uvicorn has started; the default targets absent from this
  layout say nothing;
- a malformed ``OTEL_RESOURCE_ATTRIBUTES``: one warning naming the variable (upstream:
  six raw SDK lines), the well-formed entries still on every span's resource;
- an attribute cut to the length limit on every failing request: the SDK's warning
  once, then a count when the process exits;
- the exception event of an exception that escaped a traced call: no
  ``exception.escaped`` (deprecated; upstream's SDK wrote "False").
"""

from __future__ import annotations

import pytest
import requests

from tests.integration.conftest import otlp_env
from tests.reliability.conftest import traceparent, wait_for_traces
from tests.support.processes import GRACEFUL_EXIT_CODES

_TARGETS = {
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": ("nonexistent.module:Nope",
                                              ["nonexistent.module:Nope"]),
    "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS": (
        "data.stock_data:StockDataProvider,nonexistent.provider:Provider",
        ["nonexistent.provider:Provider"]),
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS": ("nonexistent.module:Nope.run",
                                          ["nonexistent.module:Nope.run"]),
}
_RESOURCE_ATTRIBUTES = "=,,x,team=quant"
_TRUNCATING = "String attribute value exceeds max length of 4096, truncating."
_FAILING = "/api/v1/predict/6502"  # the replay has no data for it: 502
_PAD = "x" * 5000
_REQUESTS = 3


@pytest.fixture(scope="module")
def run(launch, receiver, replay):
    """One API process with every bad input, a few failing requests with a long query,
    then SIGTERM: (its log, the spans of those requests)."""
    env = {**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url,
           "OTEL_SERVICE_NAME": "clstock-bad-inputs",
           "OTEL_RESOURCE_ATTRIBUTES": _RESOURCE_ATTRIBUTES,
           **{variable: value for variable, (value, _) in _TARGETS.items()}}
    api = launch("bad-inputs", env=env)
    trace_ids = []
    try:
        for _ in range(_REQUESTS):
            trace_id, headers = traceparent()
            answer = requests.get(f"{api.url}{_FAILING}?pad={_PAD}", headers=headers, timeout=60)
            assert answer.status_code == 502, (answer.text, api.log_tail())
            trace_ids.append(trace_id)
        spans = wait_for_traces(receiver, trace_ids, timeout=20)
    finally:
        assert api.stop() in GRACEFUL_EXIT_CODES, api.log_tail()
    return api.log_text(), spans


@pytest.mark.parametrize("variable", sorted(_TARGETS))
def test_a_target_never_imported_is_one_warning_naming_the_variable(run, variable):
    log, _ = run
    value, missing = _TARGETS[variable]
    lines = [line for line in log.splitlines() if f"{variable}={value!r}" in line]
    assert len(lines) == 1, (variable, log)
    assert "WARNING" in lines[0]
    assert f": {', '.join(missing)} is not traced: the application had not imported" in lines[0]
    assert "when uvicorn finished starting" in lines[0]
    # Logged once the application was imported and started, not at instrumentation.
    assert log.index("Application startup complete") < log.index(lines[0])


def test_default_targets_absent_from_this_layout_are_silent(run):
    log, _ = run
    assert "models.core.interfaces" not in log
    assert "data.async_stock_data" not in log


def test_a_malformed_resource_attributes_is_one_warning_and_the_rest_applies(run):
    log, spans = run
    assert log.count(f"OTEL_RESOURCE_ATTRIBUTES={_RESOURCE_ATTRIBUTES!r} is invalid") == 1, log
    assert "Invalid key value resource attribute pair" not in log
    assert "invalid attribute key" not in log
    assert {s.resource.get("team") for s in spans} == {"quant"}
    assert "" not in spans[0].resource


def test_truncation_is_logged_once_then_counted_at_exit(run):
    log, spans = run
    assert log.count(_TRUNCATING) == 1, log
    server = [s for s in spans if s.kind == "SERVER"]
    assert len(server) == _REQUESTS
    assert all(len(s.attributes["url.query"]) == 4096 for s in server)  # still cut
    [report] = [line for line in log.splitlines() if "repeated" in line and "truncating" in line]
    count = int(report.split(" repeated ")[1].split()[0])
    # Every request cut its url.query at least (and more attributes besides).
    assert count >= _REQUESTS - 1, report
    assert log.index(report) > log.index("Shutting down")


def test_exception_events_of_traced_calls_have_no_exception_escaped(run):
    _, spans = run
    ours = [s for s in spans if s.scope_name.startswith("clstock_otel_distro")]
    events = [e for s in ours for e in s.events if e.name == "exception"]
    assert events, [(s.name, s.scope_name) for s in spans]
    assert all("exception.escaped" not in e.attributes for e in events)
    assert all(e.attributes["exception.stacktrace"].startswith("Traceback") for e in events)
