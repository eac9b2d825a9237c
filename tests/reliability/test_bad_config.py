"""Bad configuration, table-driven: one warning per bad variable, the fallback, and ClStock serves.

The table covers every variable the distro reads or gives a default (ours, the
standard ones our distro defaults, those our configurator checks before the SDK
reads them) with each kind of bad value: empty, garbage, negative, huge, of the
wrong type, unknown names in a list. One API process per kind, with all of that
kind's variables set at once. In each, ClStock answers every request, every bad
variable gets exactly one warning naming it and its value (header values masked),
no traceback is printed, and the spans still reach the receiver through the
fallbacks (the fallback exporter, protocol and endpoint are the receiver's). An
empty value means unset (the spec's rule): no warning, the default applies.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.integration.conftest import otlp_env
from tests.reliability.conftest import traceparent, wait_for_traces
from tests.support.processes import GRACEFUL_EXIT_CODES

HUGE = "1" + "0" * 30
REQUESTS = ("/health", "/api/v1/predict/7203", "/api/v1/stock/7203/data?period=1mo")

# Every kind's variables, set together in one process: {variable: value}.
GARBAGE = {
    "OTEL_TRACES_EXPORTER": "bogus!",
    "OTEL_METRICS_EXPORTER": "bogus!",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "smoke-signals",
    "OTEL_PYTHON_CONFIGURATOR": "bogus!",
    "OTEL_PYTHON_LOG_CORRELATION": "maybe",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "bogus!",
    "OTEL_BSP_MAX_QUEUE_SIZE": "lots",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "some",
    "OTEL_BSP_SCHEDULE_DELAY": "soon",
    "OTEL_BSP_EXPORT_TIMEOUT": "later",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "long",
    "OTEL_SPAN_EVENT_COUNT_LIMIT": "many",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "(unclosed",
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT": "whenever",
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": "not a target",
    "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS": "???",
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS": "no colon here",
    "OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS": "(unclosed",
    "OTEL_TRACES_SAMPLER": "sometimes",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "not a url",
    "OTEL_EXPORTER_OTLP_HEADERS": "api-key-without-equals-S3cretValue",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "zip",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "ten",
    "OTEL_METRIC_EXPORT_INTERVAL": "often",
    "OTEL_PYTHON_ID_GENERATOR": "bogus",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "bogus!",
}
NEGATIVE = {
    "OTEL_BSP_MAX_QUEUE_SIZE": "-5",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-5",
    "OTEL_BSP_SCHEDULE_DELAY": "-5",
    "OTEL_BSP_EXPORT_TIMEOUT": "-5",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-3",
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT": "-1",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "-1",
    "OTEL_METRIC_EXPORT_INTERVAL": "-5",
    "OTEL_METRIC_EXPORT_TIMEOUT": "-1",
    "OTEL_TRACES_SAMPLER_ARG": "-0.5",
}
HUGE_VALUES = {
    "OTEL_BSP_MAX_QUEUE_SIZE": HUGE,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": HUGE,
    "OTEL_BSP_SCHEDULE_DELAY": HUGE,
    "OTEL_BSP_EXPORT_TIMEOUT": HUGE,
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": HUGE,
    "OTEL_SPAN_LINK_COUNT_LIMIT": HUGE,
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT": HUGE,
    "OTEL_EXPORTER_OTLP_TIMEOUT": "1e30",
    "OTEL_METRIC_EXPORT_INTERVAL": "1e30",
    "OTEL_TRACES_SAMPLER_ARG": "1e30",
}
WRONG_TYPE = {
    "OTEL_BSP_MAX_QUEUE_SIZE": "1.5",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1.5",
    "OTEL_BSP_SCHEDULE_DELAY": "1.5",
    "OTEL_BSP_EXPORT_TIMEOUT": "1.5",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "12.5",
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT": "0.5",
    "OTEL_PYTHON_LOG_CORRELATION": "42",
    "OTEL_PYTHON_CONFIGURATOR": "42",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "1",
    "OTEL_TRACES_EXPORTER": "42",
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": "42",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "true",
    "OTEL_METRIC_EXPORT_INTERVAL": "true",
    "OTEL_TRACES_SAMPLER_ARG": "true",
}
UNKNOWN_NAMES = {
    "OTEL_TRACES_EXPORTER": "otlp,nosuch_exporter",
    "OTEL_METRICS_EXPORTER": "otlp,nosuch_exporter",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process,nosuch_detector",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http,nosuch_opt_in",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization,(bad",
    "OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS": r"example\.com,[bad",
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": "models.predictor:NoSuchPredictor",
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS": "data.stock_data:NoSuchClass.method",
}
# Unknown (well-formed) targets are found missing when ClStock imports their module:
# the instrumentation's warning names the target, then the variable and its value.
MISSING_TARGET_WARNINGS = {
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": "models.predictor has no class NoSuchPredictor",
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS": "data.stock_data has no class NoSuchClass",
}
EMPTY = dict.fromkeys({*GARBAGE, *NEGATIVE, *HUGE_VALUES, *WRONG_TYPE, *UNKNOWN_NAMES,
                       "OTEL_SERVICE_NAME"}, "")

KINDS = {
    "empty": EMPTY,
    "garbage": GARBAGE,
    "negative": {**NEGATIVE, "OTEL_TRACES_SAMPLER": "traceidratio"},
    "huge": {**HUGE_VALUES, "OTEL_TRACES_SAMPLER": "traceidratio"},
    "wrong-type": {**WRONG_TYPE, "OTEL_TRACES_SAMPLER": "traceidratio"},
    "unknown-names": UNKNOWN_NAMES,
}
# Set alongside a bad value, but valid themselves.
VALID_HELPERS = {"OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME"}
SECRET_NAME = re.compile("HEADERS|TOKEN|KEY|SECRET|PASSWORD")


def _shown(variable: str, value: str) -> str:
    return "***" if SECRET_NAME.search(variable) else repr(value)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bad_values_warn_once_fall_back_and_serve(launch, receiver, replay, kind):
    """One process per kind of bad value: every request served, one warning per variable."""
    settings = KINDS[kind]
    env = {**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url, **settings}
    if kind != "empty":
        env["OTEL_SERVICE_NAME"] = f"clstock-bad-{kind}"
    api = launch(f"bad-{kind}", env=env)
    trace_ids = []
    try:
        for path in REQUESTS:
            trace_id, headers = traceparent()
            answer = requests.get(api.url + path, headers=headers, timeout=60)
            assert answer.status_code == 200, (path, answer.text, api.log_tail())
            trace_ids.append(trace_id)
    finally:
        assert api.stop() in GRACEFUL_EXIT_CODES, api.log_tail()
    log = api.log_text()

    # The fallbacks keep the telemetry flowing: OTLP/HTTP to the receiver, our resource.
    spans = wait_for_traces(receiver, trace_ids, timeout=10)
    resources = {(s.resource["service.name"], s.resource["telemetry.distro.name"])
                 for s in spans}
    service = "clstock" if kind == "empty" else f"clstock-bad-{kind}"
    assert resources == {(service, "clstock-otel-distro")}
    # Stable HTTP conventions (our default, or the fallback to it).
    assert all("http.request.method" in s.attributes for s in spans if s.kind == "SERVER")

    for variable, value in settings.items():
        if variable in VALID_HELPERS:
            continue
        if kind == "empty":
            assert f"{variable}=" not in log, (variable, log)
        elif kind == "unknown-names" and variable in MISSING_TARGET_WARNINGS:
            assert log.count(MISSING_TARGET_WARNINGS[variable]) == 1, (variable, log)
        else:
            warning = f"{variable}={_shown(variable, value)} is invalid"
            assert log.count(warning) == 1, (warning, log)
    assert "S3cretValue" not in log
    assert "Traceback" not in log, log
    assert "Failed to auto initialize" not in log
    if kind == "empty":
        assert " is invalid" not in log
        # Log correlation is on by default: ClStock's own line carries its trace id.
        assert any(f"trace_id={t}" in log for t in trace_ids), log
