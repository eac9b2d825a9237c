"""Traces ClStock's predictors: ``StockPredictor`` and every subclass, present and future.

Each method below gets an INTERNAL span named after the class that defines it
(``StockPredictor.predict``, ``MomentumPredictor.calculate_score``), with
``clstock.runtime_class`` when the instance is of a subclass, and its duration goes
to the ``clstock.operation.duration`` histogram:

========================  ==========================================================
method                    attributes
========================  ==========================================================
calculate_score           clstock.symbol, clstock.score
predict                   clstock.symbol, clstock.score, clstock.predicted_return
predict_score             clstock.symbol, clstock.score
predict_return_rate       clstock.symbol, clstock.predicted_return
get_top_recommendations   clstock.top_n, clstock.recommendation_count
predict_batch             clstock.batch.size (sized arguments only), clstock.batch.failed
train                     clstock.training.samples, clstock.training.symbol_count
========================  ==========================================================

The classes come from ``OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS`` (``module:Class,...``;
the default covers this repository's and upstream ClStock's layouts). Each is patched
when the application imports its module. Usage::

    ClStockPredictorInstrumentor().instrument(tracer_provider=provider)
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping
from typing import Any

from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_PREDICTOR_TARGETS,
    OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS,
)
from clstock_otel_distro.instrumentors._machinery import (
    APPLICATION_CODE,
    PatchingInstrumentor,
    ResultExtractor,
    Target,
    TraceSpec,
    arg,
    result,
    sized_len,
    trace_classes,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_BATCH_FAILED,
    CLSTOCK_BATCH_SIZE,
    CLSTOCK_PREDICTED_RETURN,
    CLSTOCK_RECOMMENDATION_COUNT,
    CLSTOCK_SCORE,
    CLSTOCK_SYMBOL,
    CLSTOCK_TOP_N,
    CLSTOCK_TRAINING_SAMPLES,
    CLSTOCK_TRAINING_SYMBOL_COUNT,
)

__all__ = ["ClStockPredictorInstrumentor"]

_instruments = APPLICATION_CODE


def _field(value: Any, name: str) -> Any:
    """``value.name``, or ``value[name]`` for mappings; None when absent."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _number_or_field(name: str):
    """The result itself when numeric, else its ``name`` field (a Prediction's score)."""

    def extract(value: Any) -> Any:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return value
        return _field(value, name)

    return extract


def _count(value: Any) -> Any:
    """A count given as a number or as a sized collection (``BatchPrediction.failed``)."""
    if isinstance(value, numbers.Integral):
        return value
    return sized_len(value)


def _training_symbol_count(target: Target) -> ResultExtractor:
    symbols = target.arg("symbols").get

    def extract(value: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        # The result knows which symbols were used (the default universe when none
        # were given); else count the argument, if it is sized.
        count = sized_len(_field(value, "symbols"))
        return count if count is not None else sized_len(symbols(args, kwargs))

    return extract


_SYMBOL = {CLSTOCK_SYMBOL: arg("symbol")}
_METHODS: dict[str, TraceSpec] = {
    "calculate_score": TraceSpec(
        attributes=_SYMBOL, result_attributes={CLSTOCK_SCORE: result()}),
    "predict": TraceSpec(
        attributes=_SYMBOL,
        result_attributes={
            CLSTOCK_SCORE: result(lambda value: _field(value, "score")),
            CLSTOCK_PREDICTED_RETURN: result(_number_or_field("predicted_return")),
        }),
    "predict_score": TraceSpec(
        attributes=_SYMBOL, result_attributes={CLSTOCK_SCORE: result(_number_or_field("score"))}),
    "predict_return_rate": TraceSpec(
        attributes=_SYMBOL,
        result_attributes={CLSTOCK_PREDICTED_RETURN: result(_number_or_field("predicted_return"))}),
    "get_top_recommendations": TraceSpec(
        attributes={CLSTOCK_TOP_N: arg("top_n")},
        result_attributes={CLSTOCK_RECOMMENDATION_COUNT: result(sized_len)}),
    "predict_batch": TraceSpec(
        attributes={CLSTOCK_BATCH_SIZE: arg("symbols", sized_len)},
        result_attributes={CLSTOCK_BATCH_FAILED: result(lambda value: _count(
            _field(value, "failed")))}),
    "train": TraceSpec(
        result_attributes={
            CLSTOCK_TRAINING_SAMPLES: result(lambda value: _count(_field(value, "samples"))),
            CLSTOCK_TRAINING_SYMBOL_COUNT: _training_symbol_count,
        }),
}


class ClStockPredictorInstrumentor(PatchingInstrumentor):
    """Traces the predictor classes of ClStock and all their subclasses."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        return trace_classes(__name__, kwargs, _METHODS, OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS,
                             DEFAULT_CLSTOCK_PREDICTOR_TARGETS)
