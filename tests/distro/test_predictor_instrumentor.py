"""ClStockPredictorInstrumentor on ClStock's real predictors (with an offline data provider)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import types
import uuid

import numpy as np
import pandas as pd
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors.predictor import _METHODS, ClStockPredictorInstrumentor
from clstock_otel_distro.semconv import (
    CLSTOCK_BATCH_FAILED,
    CLSTOCK_BATCH_SIZE,
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_PREDICTED_RETURN,
    CLSTOCK_RECOMMENDATION_COUNT,
    CLSTOCK_RUNTIME_CLASS,
    CLSTOCK_SCORE,
    CLSTOCK_SYMBOL,
    CLSTOCK_TOP_N,
    CLSTOCK_TRAINING_SAMPLES,
    CLSTOCK_TRAINING_SYMBOL_COUNT,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
)
from data.stock_data import UnknownSymbolError
from models.predictor import MLStockPredictor, MomentumPredictor, StockPredictor
from tests.support.otel_testing import Telemetry, instrumented, parent_of, without_code

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PREDICTORS = (StockPredictor, MomentumPredictor, MLStockPredictor)


class FakeProvider:
    """Deterministic price history for two known symbols, no network."""

    def __init__(self):
        self.jp_stock_codes = {"7203": "Toyota Motor", "6758": "Sony Group"}

    def company_name(self, symbol):
        try:
            return self.jp_stock_codes[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol) from None

    def get_stock_data(self, symbol, period="1y"):
        rng = np.random.default_rng(int(symbol))
        close = 1000 * np.exp(np.cumsum(rng.normal(0.001, 0.02, 300)))
        return pd.DataFrame(
            {"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
             "Volume": rng.integers(100_000, 1_000_000, 300).astype(float)},
            index=pd.bdate_range("2023-01-02", periods=300))


class CountingList(list):
    """A list that counts how often its length is asked for."""

    len_calls = 0

    def __len__(self):
        type(self).len_calls += 1
        return super().__len__()


@pytest.fixture
def telemetry(monkeypatch):
    monkeypatch.delenv(OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS, raising=False)
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def traced(telemetry):
    with instrumented(ClStockPredictorInstrumentor(), **telemetry.kwargs) as instrumentor:
        yield instrumentor


def _momentum(symbols=("7203", "6758")):
    return MomentumPredictor(data_provider=FakeProvider(), symbols=symbols)


def _code(cls, method):
    code = inspect.unwrap(vars(cls)[method]).__code__
    return {CODE_FUNCTION_NAME: f"models.predictor.{cls.__qualname__}.{method}",
            CODE_FILE_PATH: code.co_filename, CODE_LINE_NUMBER: code.co_firstlineno}


def test_calculate_score_span(telemetry, traced):
    """calculate_score: a span named after the overriding class, symbol and score."""
    with telemetry.tracer().start_as_current_span("request") as parent:
        score = _momentum().calculate_score("7203")

    span = telemetry.span("MomentumPredictor.calculate_score")
    assert span.kind is SpanKind.INTERNAL
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        **_code(MomentumPredictor, "calculate_score"), CLSTOCK_SYMBOL: "7203",
        CLSTOCK_SCORE: score}
    assert span.status.status_code is StatusCode.UNSET


def test_predict_span_and_its_children(telemetry, traced):
    """predict: score and expected return from the Prediction; nested method spans."""
    prediction = _momentum().predict("7203")

    spans = telemetry.spans()
    predict = telemetry.span("StockPredictor.predict")
    assert dict(predict.attributes) == {
        **_code(StockPredictor, "predict"), CLSTOCK_RUNTIME_CLASS: "MomentumPredictor",
        CLSTOCK_SYMBOL: "7203", CLSTOCK_SCORE: prediction.score,
        CLSTOCK_PREDICTED_RETURN: prediction.predicted_return}
    rate = telemetry.span("StockPredictor.predict_return_rate")
    assert without_code(rate.attributes) == {
        CLSTOCK_RUNTIME_CLASS: "MomentumPredictor", CLSTOCK_SYMBOL: "7203",
        CLSTOCK_PREDICTED_RETURN: prediction.predicted_return}
    assert parent_of(rate, spans) is predict
    scores = telemetry.spans("MomentumPredictor.calculate_score")
    assert sorted(parent_of(s, spans).name for s in scores) == [
        "StockPredictor.predict", "StockPredictor.predict_return_rate"]


def test_get_top_recommendations_span(telemetry, traced):
    """get_top_recommendations: top_n (default applied) and the count returned."""
    recommendations = _momentum().get_top_recommendations()
    span = telemetry.span("StockPredictor.get_top_recommendations")
    assert without_code(span.attributes) == {
        CLSTOCK_RUNTIME_CLASS: "MomentumPredictor", CLSTOCK_TOP_N: 5,
        CLSTOCK_RECOMMENDATION_COUNT: len(recommendations)}
    assert len(recommendations) == 2


def test_predict_batch_counts_sized_arguments_only(telemetry, traced):
    """predict_batch: size of a list; a generator is not counted (nor consumed by us)."""
    batch = _momentum().predict_batch(["7203", "6758", "9999"])
    assert batch.failed == {"9999": "Unknown symbol: 9999"}
    generated = _momentum().predict_batch(s for s in ["7203", "0000"])
    assert [p.symbol for p in generated.results] == ["7203"]

    first, second = telemetry.spans("StockPredictor.predict_batch")
    assert without_code(first.attributes) == {
        CLSTOCK_RUNTIME_CLASS: "MomentumPredictor", CLSTOCK_BATCH_SIZE: 3,
        CLSTOCK_BATCH_FAILED: 1}
    assert without_code(second.attributes) == {
        CLSTOCK_RUNTIME_CLASS: "MomentumPredictor", CLSTOCK_BATCH_FAILED: 1}


def test_train_span(telemetry, traced):
    """train: samples and symbol count from the TrainingMetrics returned."""
    predictor = MLStockPredictor(data_provider=FakeProvider(), symbols=("7203", "6758"))
    metrics = predictor.train()
    span = telemetry.span("StockPredictor.train")
    assert without_code(span.attributes) == {
        CLSTOCK_RUNTIME_CLASS: "MLStockPredictor", CLSTOCK_TRAINING_SAMPLES: metrics.samples,
        CLSTOCK_TRAINING_SYMBOL_COUNT: 2}

    predictor.calculate_score("7203")
    assert "MLStockPredictor.calculate_score" in telemetry.names()
    assert "MLStockPredictor.predict_return_rate" in telemetry.names()


def test_exception_propagates_unchanged(telemetry, traced):
    """An unknown symbol's UnknownSymbolError reaches the caller; the span records it."""
    with pytest.raises(UnknownSymbolError) as raised:
        _momentum().predict("9999")
    assert raised.value.symbol == "9999"
    span = telemetry.span("StockPredictor.predict")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "UnknownSymbolError: Unknown symbol: 9999"
    assert span.attributes[ERROR_TYPE] == "data.stock_data.UnknownSymbolError"
    assert [event.name for event in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "data.stock_data.UnknownSymbolError"


def test_uninstrument_restores_every_original(telemetry):
    """After uninstrument, every method of every predictor is the original object."""
    originals = {(cls, name): vars(cls)[name]
                 for cls in _PREDICTORS for name in _METHODS if name in vars(cls)}
    with instrumented(ClStockPredictorInstrumentor(), **telemetry.kwargs):
        assert all(is_traced(vars(cls)[name]) for cls, name in originals)
    assert all(vars(cls)[name] is original for (cls, name), original in originals.items())
    assert "__init_subclass__" not in vars(StockPredictor)
    _momentum().calculate_score("7203")
    assert telemetry.spans() == []


def test_double_instrument_makes_one_span(telemetry, traced):
    """Instrumenting again is a no-op: one span per call."""
    ClStockPredictorInstrumentor().instrument(**telemetry.kwargs)
    _momentum().calculate_score("7203")
    assert telemetry.names() == ["MomentumPredictor.calculate_score"]


def test_not_recording_computes_no_attribute():
    """With a sampler dropping every span, the attribute code never runs (no len())."""
    pipeline = Telemetry.create(sampler=ALWAYS_OFF)
    with instrumented(ClStockPredictorInstrumentor(), **pipeline.kwargs):
        CountingList.len_calls = 0
        _momentum().predict_batch(CountingList(["7203", "6758"]))
        assert CountingList.len_calls == 0
    assert pipeline.spans() == []

    recording = Telemetry.create()
    with instrumented(ClStockPredictorInstrumentor(), **recording.kwargs):
        _momentum().predict_batch(CountingList(["7203", "6758"]))
        assert CountingList.len_calls == 1


def test_suppress_instrumentation(telemetry, traced):
    """No span inside suppress_instrumentation()."""
    with suppress_instrumentation():
        _momentum().predict("7203")
    assert telemetry.spans() == []


def test_custom_tracer_provider(telemetry):
    """Spans go to the tracer provider given to instrument(), and only there."""
    other = Telemetry.create()
    with instrumented(ClStockPredictorInstrumentor(), tracer_provider=other.tracer_provider):
        _momentum().calculate_score("7203")
    assert telemetry.spans() == []
    assert other.names() == ["MomentumPredictor.calculate_score"]


def test_metrics_recorded(telemetry, traced):
    """clstock.operation.duration gets one point per operation, error.type on failure."""
    predictor = _momentum()
    predictor.predict("7203")
    with pytest.raises(UnknownSymbolError):
        predictor.predict("9999")
    points = dict((tuple(sorted(a.items())), count)
                  for a, count in telemetry.points(CLSTOCK_OPERATION_DURATION))
    assert points == {
        ((CLSTOCK_OPERATION_NAME, "StockPredictor.predict"),): 1,
        ((CLSTOCK_OPERATION_NAME, "StockPredictor.predict"),
         (ERROR_TYPE, "data.stock_data.UnknownSymbolError")): 1,
        ((CLSTOCK_OPERATION_NAME, "StockPredictor.predict_return_rate"),): 1,
        ((CLSTOCK_OPERATION_NAME, "MomentumPredictor.calculate_score"),): 2,
    }


def test_subclass_defined_after_instrumentation(telemetry, traced):
    """A predictor subclass written after instrumenting is traced, super() nested."""

    class ContrarianPredictor(MomentumPredictor):
        def calculate_score(self, symbol):
            return 100 - super().calculate_score(symbol)

    ContrarianPredictor(data_provider=FakeProvider()).calculate_score("7203")
    spans = telemetry.spans()
    outer = telemetry.span("ContrarianPredictor.calculate_score")
    inner = telemetry.span("MomentumPredictor.calculate_score")
    assert parent_of(inner, spans) is outer
    assert inner.attributes[CLSTOCK_RUNTIME_CLASS] == "ContrarianPredictor"


def test_targets_from_the_environment_replace_the_defaults(telemetry, monkeypatch, caplog):
    """OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS: good entries traced, a bad one warned about."""
    module = types.ModuleType(f"custom_models_{uuid.uuid4().hex}")

    class ForecastModel:
        def predict(self, symbol):
            return 0.5

    module.ForecastModel = ForecastModel
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS,
                       f"{module.__name__}:ForecastModel,not a target")
    with caplog.at_level(logging.WARNING), \
            instrumented(ClStockPredictorInstrumentor(), **telemetry.kwargs):
        ForecastModel().predict("7203")
        _momentum().calculate_score("7203")  # the defaults no longer apply
    assert telemetry.names() == ["ForecastModel.predict"]
    assert telemetry.span("ForecastModel.predict").attributes[CLSTOCK_PREDICTED_RETURN] == 0.5
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS in warnings[0]
    assert "'not a target'" in warnings[0]


def test_real_app_imported_after_instrumentation(app_dir):
    """In a fresh process, models.predictor imported after instrument() is traced."""
    script = textwrap.dedent("""
        import json
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter)
        from clstock_otel_distro.instrumentors.predictor import ClStockPredictorInstrumentor
        import sys
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        ClStockPredictorInstrumentor().instrument(tracer_provider=provider)
        assert "models.predictor" not in sys.modules
        from models.predictor import create_predictor
        from tests.distro.test_predictor_instrumentor import FakeProvider
        create_predictor("momentum", FakeProvider()).predict("7203")
        print(json.dumps(sorted(s.name for s in exporter.get_finished_spans())))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app_dir), REPO_ROOT])}
    env.pop(OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS, None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [
        "MomentumPredictor.calculate_score", "MomentumPredictor.calculate_score",
        "StockPredictor.predict", "StockPredictor.predict_return_rate"]
