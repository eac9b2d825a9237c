"""The instrumentors' shared machinery: lazy, subclass-aware wrapping and the traced call."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import pickle
import sys
import traceback
import types
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._configuration import _import_sampler
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from clstock_otel_distro.instrumentors import _machinery as machinery
from clstock_otel_distro.instrumentors import data_provider, predictor
from clstock_otel_distro.instrumentors._machinery import (
    ArgumentSlot,
    AttributePatch,
    CallDetail,
    ClassPatch,
    InstrumentationTelemetry,
    TraceSpec,
    arg,
    traced,
)
from clstock_otel_distro.instrumentors._machinery.patches import uninstall_all
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors._machinery.values import (
    attribute_value,
    error_type,
    record_error,
    sized_len,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_RUNTIME_CLASS,
    CLSTOCK_SYMBOL,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
)
from tests.support.otel_testing import Telemetry


class QuoteError(Exception):
    """An application error raised by the test classes."""


class PicklablePredictor:
    """A module-level class (pickle finds it by name), traced by the pickling test."""

    def __init__(self, bias: float = 0.0):
        self.bias = bias

    def calculate_score(self, symbol):
        return len(symbol) + self.bias


def rank_symbols(symbols):
    """A module-level function, traced by the pickling test."""
    return sorted(symbols)


def _telemetry_for(pipeline: Telemetry) -> InstrumentationTelemetry:
    return InstrumentationTelemetry("tests.patching", pipeline.kwargs,
                              histogram=CLSTOCK_OPERATION_DURATION,
                              operation_key=CLSTOCK_OPERATION_NAME)


def _trace_class(pipeline: Telemetry, module: types.ModuleType, cls: type, patches: list,
                 specs: dict[str, TraceSpec] | None = None,
                 methods: tuple[str, ...] = ("calculate_score",)) -> ClassPatch:
    """Put ``cls`` in ``module`` and trace its methods (and its subclasses')."""
    setattr(module, cls.__name__, cls)
    tel = _telemetry_for(pipeline)
    specs = specs or {name: TraceSpec() for name in methods}
    patch = ClassPatch(module.__name__, cls.__name__,
                                {name: traced(tel, spec) for name, spec in specs.items()})
    patches.append(patch.install())
    return patch


# -- the traced call -----------------------------------------------------------------------


def test_traced_method_keeps_result_signature_and_metadata(telemetry, module, patches):
    """The wrapper returns the same object and keeps signature, name, doc and __wrapped__."""
    result = object()

    class Predictor:
        def calculate_score(self, symbol: str, period: str = "1y") -> object:
            """Score a symbol."""
            return result

    original = vars(Predictor)["calculate_score"]
    _trace_class(telemetry, module, Predictor, patches)

    wrapped = vars(Predictor)["calculate_score"]
    assert is_traced(wrapped) and wrapped.__wrapped__ is original
    assert Predictor.calculate_score.__name__ == "calculate_score"
    assert Predictor.calculate_score.__doc__ == "Score a symbol."
    assert inspect.signature(Predictor().calculate_score) == inspect.signature(
        functools.partial(original, None))
    assert Predictor().calculate_score("7203") is result
    assert Predictor.calculate_score(Predictor(), "7203") is result  # called via the class


def test_span_has_name_kind_code_attributes_and_parent(telemetry, module, patches):
    """A call makes an INTERNAL span named Class.method, child of the current span."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches)
    with telemetry.tracer().start_as_current_span("request") as parent:
        Predictor().calculate_score("7203")

    span = telemetry.span("Predictor.calculate_score")
    code = vars(Predictor)["calculate_score"].__wrapped__.__code__
    assert span.kind is SpanKind.INTERNAL
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        CODE_FUNCTION_NAME: f"{__name__}.{Predictor.__qualname__}.calculate_score",
        CODE_FILE_PATH: code.co_filename,
        CODE_LINE_NUMBER: code.co_firstlineno,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_exception_propagates_unchanged_and_marks_span(telemetry, module, patches):
    """The very exception object propagates, traceback intact; the span records it."""
    error = QuoteError("no quote for 7203")

    class Predictor:
        def calculate_score(self, symbol):
            raise error

    _trace_class(telemetry, module, Predictor, patches)
    with pytest.raises(QuoteError) as raised:
        Predictor().calculate_score("7203")

    assert raised.value is error
    assert traceback.extract_tb(raised.tb)[-1].name == "calculate_score"
    span = telemetry.span("Predictor.calculate_score")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "QuoteError: no quote for 7203"
    assert span.attributes[ERROR_TYPE] == "tests.distro.test_machinery.QuoteError"
    assert [event.name for event in span.events] == ["exception"]
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "Predictor.calculate_score",
          ERROR_TYPE: "tests.distro.test_machinery.QuoteError"}, 1)]


def test_error_type_of_builtin_and_module_exceptions():
    """error.type is the class name for builtins, module-qualified otherwise."""
    assert error_type(ValueError("x")) == "ValueError"
    assert error_type(QuoteError()) == "tests.distro.test_machinery.QuoteError"
    assert error_type(asyncio.TimeoutError()) == "TimeoutError"


def test_record_error_survives_an_exception_whose_str_raises(telemetry):
    """An exception whose __str__ raises is still recorded, and nothing is raised."""

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    with telemetry.tracer().start_as_current_span("op") as span:
        record_error(span, Unprintable())
    recorded = telemetry.span("op")
    assert recorded.status.status_code is StatusCode.ERROR
    assert recorded.status.description == "Unprintable"
    assert recorded.attributes[ERROR_TYPE].endswith("Unprintable")


def test_metrics_record_each_call_by_operation(telemetry, module, patches):
    """Each call adds one duration point under its operation name."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches)
    for symbol in ("7203", "6758", "9984"):
        Predictor().calculate_score(symbol)
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "Predictor.calculate_score"}, 3)]


# -- subclasses ---------------------------------------------------------------------------


def test_subclass_defined_after_instrumentation_is_traced(telemetry, module, patches):
    """An override in a subclass created after instrumenting gets its own span."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches)

    class LatePredictor(Predictor):
        def calculate_score(self, symbol):
            return 2.0

    assert is_traced(vars(LatePredictor)["calculate_score"])
    assert LatePredictor().calculate_score("7203") == 2.0
    assert telemetry.names() == ["LatePredictor.calculate_score"]


def test_override_calling_super_gives_two_nested_spans(telemetry, module, patches):
    """Child.m calling super().m: Child.m's span is the parent of Base.m's."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    class MomentumPredictor(Predictor):
        def calculate_score(self, symbol):
            return super().calculate_score(symbol) + 1

    _trace_class(telemetry, module, Predictor, patches)
    assert MomentumPredictor().calculate_score("7203") == 2.0

    outer = telemetry.span("MomentumPredictor.calculate_score")
    inner = telemetry.span("Predictor.calculate_score")
    assert inner.parent.span_id == outer.context.span_id
    assert inner.attributes[CLSTOCK_RUNTIME_CLASS] == "MomentumPredictor"
    assert CLSTOCK_RUNTIME_CLASS not in outer.attributes


def test_inherited_method_is_wrapped_once_on_its_defining_class(telemetry, module, patches):
    """A subclass that does not override the method calls the base's single wrapper."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    class ValuePredictor(Predictor):
        pass

    _trace_class(telemetry, module, Predictor, patches)

    class LateValuePredictor(ValuePredictor):
        pass

    assert "calculate_score" not in vars(ValuePredictor)
    assert "calculate_score" not in vars(LateValuePredictor)
    LateValuePredictor().calculate_score("7203")
    span = telemetry.span("Predictor.calculate_score")
    assert span.attributes[CLSTOCK_RUNTIME_CLASS] == "LateValuePredictor"


def test_uninstall_restores_original_objects_everywhere(telemetry, module, patches):
    """Base, subclasses (old and new) and __init_subclass__ get their originals back."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    class MomentumPredictor(Predictor):
        def calculate_score(self, symbol):
            return 2.0

    originals = {cls: vars(cls)["calculate_score"] for cls in (Predictor, MomentumPredictor)}
    patch = _trace_class(telemetry, module, Predictor, patches)
    assert "__init_subclass__" in vars(Predictor)

    class LatePredictor(Predictor):
        def calculate_score(self, symbol):
            return 3.0

    late = vars(LatePredictor)["calculate_score"].__wrapped__
    patch.uninstall()

    for cls, original in originals.items():
        assert vars(cls)["calculate_score"] is original
    assert vars(LatePredictor)["calculate_score"] is late
    assert "__init_subclass__" not in vars(Predictor)

    class AfterPredictor(Predictor):
        def calculate_score(self, symbol):
            return 4.0

    assert not is_traced(vars(AfterPredictor)["calculate_score"])
    LatePredictor().calculate_score("7203")
    assert telemetry.spans() == []


def test_init_subclass_hook_chains_to_the_class_own_hook(telemetry, module, patches):
    """A base's own __init_subclass__ still runs, with class keywords; restored exactly."""
    seen = []

    class Predictor:
        def __init_subclass__(cls, flavor: str = "plain", **kwargs):
            super().__init_subclass__(**kwargs)
            seen.append((cls.__name__, flavor))

        def calculate_score(self, symbol):
            return 1.0

    own_hook = vars(Predictor)["__init_subclass__"]
    patch = _trace_class(telemetry, module, Predictor, patches)

    class SpicyPredictor(Predictor, flavor="spicy"):
        def calculate_score(self, symbol):
            return 2.0

    assert seen == [("SpicyPredictor", "spicy")]
    assert is_traced(vars(SpicyPredictor)["calculate_score"])
    patch.uninstall()
    assert vars(Predictor)["__init_subclass__"] is own_hook


def test_init_subclass_hook_chains_to_an_inherited_hook(telemetry, module, patches):
    """Without its own hook, the base's hook defers to the one up its MRO."""
    seen = []

    class Registry:
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            seen.append(cls.__name__)

    class Predictor(Registry):
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches)

    class LatePredictor(Predictor):
        def calculate_score(self, symbol):
            return 2.0

    assert seen == ["Predictor", "LatePredictor"]
    assert is_traced(vars(LatePredictor)["calculate_score"])


def test_installing_twice_does_not_double_wrap(telemetry, module, patches):
    """A second patch of the same class finds the methods traced and leaves them."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches)
    first = vars(Predictor)["calculate_score"]
    _trace_class(telemetry, module, Predictor, patches)
    assert vars(Predictor)["calculate_score"] is first

    class LatePredictor(Predictor):
        def calculate_score(self, symbol):
            return 2.0

    assert not is_traced(vars(LatePredictor)["calculate_score"].__wrapped__)
    LatePredictor().calculate_score("7203")
    Predictor().calculate_score("7203")
    assert sorted(telemetry.names()) == ["LatePredictor.calculate_score",
                                         "Predictor.calculate_score"]


def test_static_and_class_methods_are_traced(telemetry, module, patches):
    """staticmethod and classmethod keep their binding; arguments are still found."""

    class Predictor:
        @staticmethod
        def normalise(symbol):
            return symbol.upper()

        @classmethod
        def create(cls, symbol):
            return cls, symbol

    spec = TraceSpec(attributes={CLSTOCK_SYMBOL: arg("symbol")})
    _trace_class(telemetry, module, Predictor, patches,
                 specs={"normalise": spec, "create": spec})

    assert Predictor.normalise("abc") == "ABC"
    assert Predictor().normalise("def") == "DEF"
    assert Predictor.create("7203") == (Predictor, "7203")
    assert [s.attributes[CLSTOCK_SYMBOL] for s in telemetry.spans()] == ["abc", "def", "7203"]


def test_traced_functions_pickle_and_copy_like_plain_ones(telemetry, patches):
    """Bound methods and functions still pickle (process pools) and copy when traced."""
    tel = _telemetry_for(telemetry)
    spec = traced(tel, TraceSpec())
    patches.append(ClassPatch(__name__, "PicklablePredictor",
                                       {"calculate_score": spec}).install())
    patches.append(AttributePatch(__name__, "rank_symbols", spec).install())
    assert is_traced(vars(PicklablePredictor)["calculate_score"])

    method = pickle.loads(pickle.dumps(PicklablePredictor(1.5).calculate_score))
    assert method("7203") == 5.5
    assert pickle.loads(pickle.dumps(PicklablePredictor.calculate_score))(
        PicklablePredictor(), "72") == 2
    assert pickle.loads(pickle.dumps(rank_symbols))(["b", "a"]) == ["a", "b"]
    holder = {"score": PicklablePredictor(2.0).calculate_score}
    copied = copy.deepcopy(holder)
    assert copied["score"]("7203") == 6.0 and copied["score"] is not holder["score"]
    assert copy.copy(rank_symbols) is rank_symbols
    assert telemetry.names() == [
        "PicklablePredictor.calculate_score", "PicklablePredictor.calculate_score",
        "rank_symbols", "PicklablePredictor.calculate_score"]


# -- coroutines and generators ----------------------------------------------------------


def test_coroutine_method_is_traced_until_it_completes(telemetry, module, patches):
    """An async method stays a coroutine function; the span covers the awaited work."""

    class Provider:
        async def calculate_score(self, symbol):
            await asyncio.sleep(0.01)
            return 7.0

    _trace_class(telemetry, module, Provider, patches)
    assert inspect.iscoroutinefunction(Provider.calculate_score)
    assert inspect.iscoroutinefunction(Provider().calculate_score)
    assert asyncio.run(Provider().calculate_score("7203")) == 7.0
    span = telemetry.span("Provider.calculate_score")
    assert (span.end_time - span.start_time) >= 10_000_000


def test_coroutine_exception_propagates_unchanged(telemetry, module, patches):
    """An async method's exception reaches the awaiter as the same object."""
    error = QuoteError("timeout")

    class Provider:
        async def calculate_score(self, symbol):
            raise error

    _trace_class(telemetry, module, Provider, patches)
    with pytest.raises(QuoteError) as raised:
        asyncio.run(Provider().calculate_score("7203"))
    assert raised.value is error
    assert telemetry.span("Provider.calculate_score").status.status_code is StatusCode.ERROR


def test_async_generator_span_is_current_only_inside_the_generator(telemetry, module, patches):
    """The span covers the iteration, but the consumer never runs inside it."""
    inside, outside = [], []

    class Feed:
        async def calculate_score(self, count):
            for i in range(count):
                inside.append(trace.get_current_span())
                yield i

    _trace_class(telemetry, module, Feed, patches)
    assert inspect.isasyncgenfunction(Feed.calculate_score)

    async def consume():
        with telemetry.tracer().start_as_current_span("consumer") as consumer:
            items = []
            async for item in Feed().calculate_score(3):
                outside.append(trace.get_current_span())
                items.append(item)
            return consumer, items

    consumer, items = asyncio.run(consume())
    span = telemetry.span("Feed.calculate_score")
    assert items == [0, 1, 2]
    assert {s.get_span_context().span_id for s in inside} == {span.context.span_id}
    assert all(s is consumer for s in outside)
    assert span.parent.span_id == consumer.get_span_context().span_id


def test_async_generator_exception_and_early_close(telemetry, module, patches):
    """An error inside fails the span; aclose() by the consumer ends it normally."""
    error = QuoteError("feed broke")

    class Feed:
        async def calculate_score(self, fail):
            yield 1
            if fail:
                raise error
            yield 2

    _trace_class(telemetry, module, Feed, patches)

    async def run():
        with pytest.raises(QuoteError) as raised:
            async for _ in Feed().calculate_score(True):
                pass
        assert raised.value is error
        stream = Feed().calculate_score(False)
        assert await stream.__anext__() == 1
        await stream.aclose()

    asyncio.run(run())
    failed, closed = telemetry.spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert closed.status.status_code is StatusCode.UNSET


def test_generator_forwards_send_throw_and_close(telemetry, module, patches):
    """A traced generator passes sent values and thrown exceptions to the real one."""

    class Echo:
        def calculate_score(self, start):
            value = yield start
            while True:
                try:
                    value = yield value * 2
                except QuoteError:
                    value = yield "handled"

    _trace_class(telemetry, module, Echo, patches)
    assert inspect.isgeneratorfunction(Echo.calculate_score)
    echo = Echo().calculate_score(1)
    assert next(echo) == 1
    assert echo.send(5) == 10
    assert echo.throw(QuoteError()) == "handled"
    assert echo.send(4) == 8
    echo.close()
    span = telemetry.span("Echo.calculate_score")
    assert span.status.status_code is StatusCode.UNSET


def test_generator_return_value_reaches_yield_from(telemetry, module, patches):
    """The generator's return value is what ``yield from`` gets."""

    class Producer:
        def calculate_score(self):
            yield 1
            return "done"

    _trace_class(telemetry, module, Producer, patches)

    def outer():
        result = yield from Producer().calculate_score()
        yield result

    assert list(outer()) == [1, "done"]
    assert len(telemetry.spans("Producer.calculate_score")) == 1


def test_async_generator_forwards_athrow_and_asend(telemetry, module, patches):
    """A traced async generator passes sent values and thrown exceptions inside, in its span."""
    seen = []

    class Echo:
        async def calculate_score(self, start):
            value = yield start
            while True:
                try:
                    value = yield value * 2
                except QuoteError:
                    seen.append(trace.get_current_span())
                    value = yield "handled"

    _trace_class(telemetry, module, Echo, patches)

    async def run():
        echo = Echo().calculate_score(1)
        assert await echo.__anext__() == 1
        assert await echo.asend(5) == 10
        assert await echo.athrow(QuoteError()) == "handled"
        assert await echo.asend(4) == 8
        await echo.aclose()

    asyncio.run(run())
    span = telemetry.span("Echo.calculate_score")
    assert [s.get_span_context().span_id for s in seen] == [span.context.span_id]
    assert span.status.status_code is StatusCode.UNSET


def test_suppressed_generators_pass_everything_through(telemetry, module, patches):
    """Suppressed, both generator kinds yield, receive and return as untraced."""

    class Feed:
        def calculate_score(self, start):
            value = yield start
            yield value + 1
            return "done"

        async def predict(self, start):
            value = yield start
            yield value + 1

    _trace_class(telemetry, module, Feed, patches, methods=("calculate_score", "predict"))

    async def consume():
        feed = Feed().predict(1)
        return [await feed.__anext__(), await feed.asend(10)]

    with suppress_instrumentation():
        feed = Feed().calculate_score(1)
        assert [next(feed), feed.send(10)] == [1, 11]
        with pytest.raises(StopIteration) as stop:
            next(feed)
        assert stop.value.value == "done"
        assert asyncio.run(consume()) == [1, 11]
    assert telemetry.spans() == []
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == []


# -- arguments and attributes ---------------------------------------------------------------


def test_argument_slot_reads_positional_keyword_and_default():
    """One slot finds an argument however it was passed, default applied."""

    def get_stock_data(self, symbol, period="1y", *, interval="1d", **extra):
        return None

    period, interval, other = (ArgumentSlot(get_stock_data, name, skip_first=True).get
                               for name in ("period", "interval", "proxy"))
    assert period(("7203", "6mo"), {}) == "6mo"
    assert period(("7203",), {"period": "2y"}) == "2y"
    assert period(("7203",), {}) == "1y"
    assert interval((), {"interval": "1wk"}) == "1wk"
    assert interval(("7203",), {}) == "1d"
    assert other((), {"proxy": "p"}) == "p"  # found in **kwargs


def test_argument_slot_replace_leaves_the_call_untouched():
    """replace() builds new args/kwargs; the caller's objects are not modified."""

    def request(self, method, url, headers=None):
        return None

    slot = ArgumentSlot(request, "headers", skip_first=True)
    args, kwargs = ("GET", "http://x", {"a": "1"}), {}
    new_args, _ = slot.replace(args, kwargs, {"b": "2"})
    assert new_args == ("GET", "http://x", {"b": "2"}) and args[2] == {"a": "1"}
    kwargs = {"headers": {"a": "1"}}
    _, new_kwargs = slot.replace(("GET", "http://x"), kwargs, None)
    assert new_kwargs == {"headers": None} and kwargs == {"headers": {"a": "1"}}


def test_attribute_value_keeps_valid_types_and_drops_others():
    """Attribute values are primitives or homogeneous lists; other objects are left out."""
    assert attribute_value("7203") == "7203"
    assert attribute_value(("a", "b")) == ["a", "b"]
    assert attribute_value([1, 2.5]) == [1, 2.5]
    assert attribute_value(object()) is None
    assert attribute_value(["a", 1]) is None
    assert sized_len(iter([1, 2])) is None
    assert sized_len([1, 2]) == 2


def test_attribute_value_gives_numbers_as_builtin_types():
    """numpy's float64 (a float subclass) and int64, and an IntEnum, become the builtin
    number: a span keeps no foreign object and stores them on its plain path."""
    import enum

    import numpy as np

    class Level(enum.IntEnum):
        HIGH = 3

    for value, expected in [(np.float64(61.25), 61.25), (np.int64(7), 7), (Level.HIGH, 3),
                            (np.float32(0.5), 0.5), (True, True), (2.5, 2.5)]:
        converted = attribute_value(value)
        assert converted == expected and type(converted) is type(expected), value


class _Hostile:
    """An argument or result every operation on which raises."""

    def __len__(self):
        raise RuntimeError("len")

    def __str__(self):
        raise RuntimeError("str")

    def __repr__(self):
        raise RuntimeError("repr")

    def __eq__(self, other):
        raise RuntimeError("eq")

    def __hash__(self):
        raise RuntimeError("hash")

    def __iter__(self):
        raise RuntimeError("iter")

    def __getattr__(self, name):
        raise RuntimeError(f"getattr {name}")


_odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50),
    st.just("x" * 100_000), st.binary(max_size=20), st.builds(_Hostile),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.builds(_Hostile)), max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.builds(lambda: iter([1, 2, 3])),
)


def test_extractors_never_raise_into_the_application(telemetry, module, patches):
    """Whatever the arguments and results, the real extractors never reach the caller."""

    class Echo:
        """Every traced method name, with the real signatures, returning ``self.out``."""

        def __init__(self, codes, out):
            self.jp_stock_codes, self.out = codes, out

        def calculate_score(self, symbol):
            return self.out

        predict = predict_score = predict_return_rate = calculate_score

        def get_top_recommendations(self, top_n=5):
            return self.out

        def predict_batch(self, symbols, max_workers=4):
            return self.out

        def train(self, symbols=None, period="2y"):
            return self.out

        def get_stock_data(self, symbol, period="1y"):
            return self.out

        def get_multiple_stocks(self, symbols, period="1y"):
            return self.out

    specs = {**predictor._METHODS, **data_provider._METHODS}
    _trace_class(telemetry, module, Echo, patches, specs=specs)
    parameters = {
        "calculate_score": ("symbol",), "predict": ("symbol",), "predict_score": ("symbol",),
        "predict_return_rate": ("symbol",), "get_top_recommendations": ("top_n",),
        "predict_batch": ("symbols", "max_workers"), "train": ("symbols", "period"),
        "get_stock_data": ("symbol", "period"), "get_multiple_stocks": ("symbols", "period"),
    }
    assert set(parameters) == set(specs)

    @settings(max_examples=60, deadline=None)
    @given(codes=_odd, out=_odd, first=_odd, second=_odd)
    def check(codes, out, first, second):
        echo = Echo(codes, out)
        for name, names in parameters.items():
            values = (first, second)[:len(names)]
            assert getattr(echo, name)(*values) is out
            assert getattr(echo, name)(**dict(zip(names, values))) is out

    check()
    assert len(telemetry.spans()) >= 2 * len(parameters)


# -- sampling and suppression ----------------------------------------------------------------


def _counting_spec(calls: list) -> TraceSpec:
    def counting(target):
        def extract(*args):
            calls.append(target.name)
            return "x"

        return extract

    return TraceSpec(attributes={CLSTOCK_SYMBOL: counting},
                              result_attributes={"clstock.score": counting})


def test_non_recording_span_computes_no_attributes(module, patches):
    """With a sampler that drops everything, no extractor runs; the call is measured."""
    pipeline = Telemetry.create(sampler=ALWAYS_OFF)
    calls: list = []

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(pipeline, module, Predictor, patches,
                 specs={"calculate_score": _counting_spec(calls)})
    assert Predictor().calculate_score("7203") == 1.0
    assert calls == [] and pipeline.spans() == []
    assert pipeline.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "Predictor.calculate_score"}, 1)]


def test_suppressed_instrumentation_creates_no_span_and_no_metric(telemetry, module, patches):
    """Inside suppress_instrumentation() the call goes straight through."""

    class Predictor:
        def calculate_score(self, symbol):
            return trace.get_current_span()

    _trace_class(telemetry, module, Predictor, patches)
    with suppress_instrumentation():
        current = Predictor().calculate_score("7203")
    assert current is trace.INVALID_SPAN
    assert telemetry.spans() == []
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == []


@pytest.mark.parametrize("remote", [False, True])
def test_non_sampled_parent_takes_the_fast_path(telemetry, module, patches, remote):
    """Under a non-sampled parent no span is created; the parent stays current."""
    calls: list = []

    class Predictor:
        def calculate_score(self, symbol):
            return trace.get_current_span()

    _trace_class(telemetry, module, Predictor, patches,
                 specs={"calculate_score": _counting_spec(calls)})
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=remote,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    with trace.use_span(parent):
        assert Predictor().calculate_score("7203") is parent
        assert Predictor().calculate_score("6758") is parent
    assert calls == [] and telemetry.spans() == []
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "Predictor.calculate_score"}, 2)]


def test_non_sampled_parent_with_a_non_parent_based_sampler_still_traces(module, patches):
    """The fast path is only for samplers that drop such children: ALWAYS_ON samples."""
    pipeline = Telemetry.create(sampler=ALWAYS_ON)

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(pipeline, module, Predictor, patches)
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    with trace.use_span(parent):
        Predictor().calculate_score("7203")
    assert pipeline.span("Predictor.calculate_score").parent.span_id == 0xDEF


@pytest.mark.parametrize("configured", ["object", "entry point"])
def test_always_off_takes_the_fast_path_under_a_non_sampled_parent(module, patches, configured):
    """ALWAYS_OFF drops every child: no span object, the parent stays current, measured.

    OTEL_TRACES_SAMPLER=always_off under opentelemetry-instrument is the SDK's
    ``always_off`` entry point: a subclass of StaticSampler, not ALWAYS_OFF itself."""
    if configured == "entry point":
        sampler = _import_sampler("always_off")
        assert type(sampler) is not type(ALWAYS_OFF)
    else:
        sampler = ALWAYS_OFF
    pipeline = Telemetry.create(sampler=sampler)
    calls: list = []

    class Predictor:
        def calculate_score(self, symbol):
            return trace.get_current_span()

    _trace_class(pipeline, module, Predictor, patches,
                 specs={"calculate_score": _counting_spec(calls)})
    parent = pipeline.tracer().start_span("request")  # non-recording, sampled=0
    assert not parent.get_span_context().trace_flags.sampled
    with trace.use_span(parent):
        assert Predictor().calculate_score("7203") is parent
    sampled = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True,
                                           trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(sampled):  # a sampled parent: the sampler decides (drops)
        child = Predictor().calculate_score("7203")
    assert child is not sampled and not child.get_span_context().trace_flags.sampled
    assert calls == [] and pipeline.spans() == []
    assert pipeline.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "Predictor.calculate_score"}, 2)]


def test_children_of_a_parent_that_ended_keep_their_attributes_in_order(telemetry, module,
                                                                          patches):
    """The verdict remembered for a parent: a child started after the parent ended has the
    same attributes, in the same order, as one started before."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    _trace_class(telemetry, module, Predictor, patches,
                 specs={"calculate_score": TraceSpec(attributes={CLSTOCK_SYMBOL: arg("symbol")})})
    parent = telemetry.tracer().start_span("request")
    with trace.use_span(parent, end_on_exit=False):
        Predictor().calculate_score("7203")
        parent.end()
        Predictor().calculate_score("7203")
    before, after = telemetry.spans("Predictor.calculate_score")
    assert list(after.attributes.items()) == list(before.attributes.items())
    assert list(before.attributes)[-1] == CLSTOCK_SYMBOL
    assert after.parent.span_id == parent.get_span_context().span_id


def test_alternating_sampled_and_non_sampled_parents(telemetry, module, patches):
    """The remembered verdict follows the parent: traced, fast path, traced again."""

    class Predictor:
        def calculate_score(self, symbol):
            return trace.get_current_span()

    _trace_class(telemetry, module, Predictor, patches)
    unsampled = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False,
                                             trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    with telemetry.tracer().start_as_current_span("request") as sampled:
        first = Predictor().calculate_score("7203")
        with trace.use_span(unsampled):
            assert Predictor().calculate_score("7203") is unsampled
        second = Predictor().calculate_score("7203")
    assert first is not sampled and second is not sampled and first is not second
    assert [span.parent.span_id for span in telemetry.spans("Predictor.calculate_score")] == [
        sampled.get_span_context().span_id] * 2


def test_a_failed_detach_is_logged_not_raised(telemetry, caplog):
    """Ending a call in another context (a token it cannot reset): logged like the API."""
    import contextvars

    from clstock_otel_distro.instrumentors._machinery.calls import Operation
    from clstock_otel_distro.instrumentors._machinery.specs import Target

    def score(symbol):
        return 1.0

    op = Operation(_telemetry_for(telemetry), Target(module_of(score), "score", score),
                   TraceSpec())

    def scenario():
        with telemetry.tracer().start_as_current_span("request"):
            call = op.begin(None, ("7203",), {})
            with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
                contextvars.copy_context().run(call.succeed, 1.0)
        return call

    call = contextvars.copy_context().run(scenario)
    assert call.token is None
    assert [r.getMessage() for r in caplog.records] == ["Failed to detach context"]
    assert telemetry.span("score").status.status_code is StatusCode.UNSET


def module_of(function):
    return sys.modules[function.__module__]


# -- per-call operations ----------------------------------------------------------------------


class _Upper(CallDetail):
    """A per-call detail that upper-cases the first argument; ``broken`` names what raises."""

    __slots__ = ("broken",)
    span_name = "fetch upper"

    def __init__(self, broken: str):
        self.broken = broken

    def attributes(self):
        if self.broken == "attributes":
            raise RuntimeError("attributes")
        return {"hook.stage": "start"}

    def prepare(self, args, kwargs, context):
        if self.broken == "prepare":
            raise RuntimeError("prepare")
        return (args[0].upper(), *args[1:]), kwargs

    def classify(self, value):
        return "shouted" if value == "ERR" else None


def _fetch_with_hook(telemetry, module, patches, broken=""):
    def fetch(symbol):
        return symbol

    module.fetch = fetch

    def per_call(target):
        def describe(instance, args, kwargs):
            if broken == "describe":
                raise RuntimeError("describe")
            return None if args[0] == "skip" else _Upper(broken)

        return describe

    spec = TraceSpec(code_attributes=False, per_call=per_call)
    patches.append(AttributePatch(module.__name__, "fetch",
                                  traced(_telemetry_for(telemetry), spec)).install())
    return module.fetch


def test_per_call_detail_names_annotates_and_prepares_the_call(telemetry, module, patches):
    """The detail names the span, gives its attributes, rewrites the arguments, fails it."""
    fetch = _fetch_with_hook(telemetry, module, patches)
    assert fetch("abc") == "ABC"
    assert fetch("err") == "ERR"
    assert fetch("skip") == "skip"  # declined: called through, untraced
    ok, failed = telemetry.spans()
    assert ok.name == failed.name == "fetch upper"
    assert dict(ok.attributes) == {"hook.stage": "start"}
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description is None
    assert failed.attributes[ERROR_TYPE] == "shouted"
    assert sorted(count for _, count in telemetry.points(CLSTOCK_OPERATION_DURATION)) == [1, 1]


@pytest.mark.parametrize(("broken", "spans"), [("describe", 0), ("attributes", 0),
                                                ("prepare", 1)])
def test_a_failing_per_call_hook_never_reaches_the_application(telemetry, module, patches,
                                                               broken, spans):
    """A hook that raises leaves the call as the application made it."""
    fetch = _fetch_with_hook(telemetry, module, patches, broken)
    assert fetch("abc") == "abc"
    assert len(telemetry.spans()) == spans


# -- lazy patching ------------------------------------------------------------------------------


def test_patch_waits_for_the_module_to_be_imported(telemetry, tmp_path, monkeypatch, patches):
    """Installing imports nothing; the class is patched when the app imports it."""
    name = f"lazy_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "class Predictor:\n    def calculate_score(self, symbol):\n        return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    tel = _telemetry_for(telemetry)
    patch = ClassPatch(name, "Predictor",
                                {"calculate_score": traced(tel, TraceSpec())})
    patches.append(patch.install())
    assert name not in sys.modules

    app = __import__(name)
    assert is_traced(vars(app.Predictor)["calculate_score"])
    app.Predictor().calculate_score("7203")
    assert telemetry.names() == ["Predictor.calculate_score"]


def test_uninstalled_patch_does_not_fire_on_a_later_import(telemetry, tmp_path, monkeypatch):
    """The import hook of an uninstalled patch is disarmed: wrapt cannot remove it."""
    name = f"lazy_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "class Predictor:\n    def calculate_score(self, symbol):\n        return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tel = _telemetry_for(telemetry)
    patch = ClassPatch(name, "Predictor",
                                {"calculate_score": traced(tel, TraceSpec())})
    patch.install()
    patch.uninstall()  # never imported: nothing to restore, and no error
    app = __import__(name)
    monkeypatch.delitem(sys.modules, name)
    assert not is_traced(vars(app.Predictor)["calculate_score"])
    assert "__init_subclass__" not in vars(app.Predictor)


def test_missing_class_logs_one_line(telemetry, module, patches, caplog):
    """A target class absent from its imported module is logged once, at the given level."""
    tel = _telemetry_for(telemetry)
    patch = ClassPatch(module.__name__, "Nowhere",
                                {"calculate_score": traced(tel, TraceSpec())},
                                missing_level=logging.WARNING)
    with caplog.at_level(logging.DEBUG, logger=machinery.__name__):
        patches.append(patch.install())
    assert [r.getMessage() for r in caplog.records] == [
        f"clstock-otel: {module.__name__} has no class Nowhere; not traced"]


def test_a_failing_patch_is_logged_not_raised(telemetry, module, patches, caplog):
    """A wrapper factory that raises does not fail the application's import."""

    class Predictor:
        def calculate_score(self, symbol):
            return 1.0

    module.Predictor = Predictor

    def broken(target):
        raise RuntimeError("bad wrapper")

    with caplog.at_level(logging.WARNING, logger=machinery.__name__):
        patches.append(ClassPatch(module.__name__, "Predictor",
                                           {"calculate_score": broken}).install())
    assert "could not instrument" in caplog.text
    assert Predictor().calculate_score("7203") == 1.0


def test_partialmethods_of_the_wrapped_method_are_rebound(telemetry, module, patches):
    """``get = partialmethod(request, "GET")`` is traced too, and restored after."""

    class Session:
        def request(self, method, url):
            return method, url

        get = functools.partialmethod(request, "GET")

    module.Session = Session
    original_get = vars(Session)["get"]
    tel = _telemetry_for(telemetry)
    patch = AttributePatch(module.__name__, "Session.request",
                                    traced(tel, TraceSpec()),
                                    rebind_partialmethods=True)
    patches.append(patch.install())

    assert Session().get("http://x") == ("GET", "http://x")
    assert telemetry.names() == ["Session.request"]
    patch.uninstall()
    assert vars(Session)["get"] is original_get


def test_an_alias_of_a_wrapped_function_is_restored_too(telemetry, module, patches):
    """``pkg.f`` bound from the already-patched ``pkg.mod.f`` is restored on uninstall."""

    def download(tickers):
        return tickers

    module.download = download
    alias = types.ModuleType(f"{module.__name__}_alias")
    sys.modules[alias.__name__] = alias
    try:
        tel = _telemetry_for(telemetry)
        wrapper = traced(tel, TraceSpec(name="download"))
        patches.append(AttributePatch(module.__name__, "download", wrapper,
                                               group=tel).install())
        alias.download = module.download  # what ``from .multi import download`` does
        patches.append(AttributePatch(alias.__name__, "download", wrapper,
                                               group=tel).install())
        alias.download("7203.T")
        assert telemetry.names() == ["download"]
        uninstall_all(patches)
        assert module.download is download and alias.download is download
    finally:
        del sys.modules[alias.__name__]


@pytest.mark.parametrize("sampler", [None, "parentbased_traceidratio", "always_on"])
def test_child_verdict_for_pipeline_parents_is_the_generic_ones(sampler, monkeypatch):
    """A pipeline span read directly as a parent (no SpanContext built) gets the verdict
    its span context would give: running, ended, under each sampler."""
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    from clstock_otel_distro.instrumentors._machinery import sampling
    from tests.distro.pipeline_testing import Pipelines

    chosen = {"parentbased_traceidratio": ParentBasedTraceIdRatio(1.0),
              "always_on": ALWAYS_ON}.get(sampler)
    pipelines = Pipelines.create(sampler=chosen)
    try:
        tracer = pipelines.pipeline.get_tracer("t")
        running = tracer.start_span("running")
        ended = tracer.start_span("ended")
        ended.end()
        assert type(running) is sampling._PIPELINE_SPAN
        verdicts = []
        for direct in (True, False):
            if not direct:  # the generic path: the parent's span context, property by property
                monkeypatch.setattr(sampling, "_PIPELINE_SPAN", None)
            child_sampling = sampling.ChildSampling(tracer)
            verdicts.append([child_sampling.verdict(span) for span in (running, ended)])
        assert verdicts[0] == verdicts[1]
        expected_running = sampling.UNDECIDED if sampler == "always_on" else sampling.RECORDS
        assert verdicts[0] == [expected_running, sampling.UNDECIDED]
    finally:
        pipelines.shutdown()
