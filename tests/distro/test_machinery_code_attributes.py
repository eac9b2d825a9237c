"""The code.* attributes of traced spans: all three by default, fewer on request."""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest

from clstock_otel_distro.instrumentors import _machinery as machinery
from clstock_otel_distro.instrumentors._machinery import (
    ClassPatch,
    InstrumentationTelemetry,
    TraceSpec,
    traced,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
)
from tests.support.otel_testing import Telemetry


def _code_keys(pipeline: Telemetry, module: types.ModuleType, patches: list,
               **options: Any) -> set[str]:
    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    module.Predictor = Predictor
    tel = InstrumentationTelemetry("tests.code", {**pipeline.kwargs, **options},
                             histogram=CLSTOCK_OPERATION_DURATION)
    patch = ClassPatch(module.__name__, "Predictor",
                                {"calculate_score": traced(tel, TraceSpec())})
    patches.append(patch.install())
    Predictor().calculate_score("7203")
    attributes = pipeline.span("Predictor.calculate_score").attributes
    return {key for key in attributes if key.startswith("code.")}


def test_all_code_attributes_by_default(telemetry, module, patches):
    """Function name, file path and line number, unless told otherwise."""
    assert _code_keys(telemetry, module, patches) == {
        CODE_FUNCTION_NAME, CODE_FILE_PATH, CODE_LINE_NUMBER}


@pytest.mark.parametrize(("detail", "expected"), [
    ("function", {CODE_FUNCTION_NAME}), ("none", set())])
def test_fewer_code_attributes_on_request(telemetry, module, patches, detail, expected):
    """code_attributes="function" keeps the name only; "none" leaves them all out."""
    assert _code_keys(telemetry, module, patches, code_attributes=detail) == expected


def test_an_unknown_code_attributes_value_warns_and_keeps_all(telemetry, module, patches,
                                                              caplog):
    """A bad value logs one warning naming it and falls back to all three."""
    with caplog.at_level(logging.WARNING, logger=machinery.__name__):
        keys = _code_keys(telemetry, module, patches, code_attributes="some")
    assert keys == {CODE_FUNCTION_NAME, CODE_FILE_PATH, CODE_LINE_NUMBER}
    assert [r.getMessage() for r in caplog.records if "code_attributes" in r.getMessage()] == [
        "clstock-otel: code_attributes='some' is not one of 'all', 'function', 'none'; "
        "using 'all'"]


@pytest.mark.parametrize(("value", "expected"), [
    ("function", {CODE_FUNCTION_NAME}), ("NONE", set()),
    ("all", {CODE_FUNCTION_NAME, CODE_FILE_PATH, CODE_LINE_NUMBER})])
def test_the_environment_variable_chooses_when_no_argument_does(
        telemetry, module, patches, monkeypatch, value, expected):
    """OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES applies to every instrumentor (any case)."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES", value)
    assert _code_keys(telemetry, module, patches) == expected


def test_the_argument_wins_over_the_environment_variable(telemetry, module, patches,
                                                         monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES", "none")
    assert _code_keys(telemetry, module, patches, code_attributes="function") == {
        CODE_FUNCTION_NAME}


def test_a_bad_environment_value_warns_once_and_keeps_all(telemetry, module, patches,
                                                          monkeypatch, caplog):
    """One warning naming the variable and value, however many instrumentors read it."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES", "lines")
    with caplog.at_level(logging.WARNING):
        keys = _code_keys(telemetry, module, patches)
        InstrumentationTelemetry("tests.code.other", telemetry.kwargs,
                           histogram=CLSTOCK_OPERATION_DURATION)
    assert keys == {CODE_FUNCTION_NAME, CODE_FILE_PATH, CODE_LINE_NUMBER}
    assert [r.getMessage() for r in caplog.records
            if "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES" in r.getMessage()] == [
        "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES='lines' is invalid (expected one of all, "
        "function, none); using the default 'all' instead"]
