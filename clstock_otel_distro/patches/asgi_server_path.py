"""A lean ``OpenTelemetryMiddleware.__call__`` for the configuration the distro runs.

Upstream's ASGI middleware (the FastAPI instrumentation installs it) does, per
request, several times what it needs once: every header lookup decodes and
lowercases all the request's headers (the Host header three times: for the
excluded-URL check, the URL and the old conventions' server name; the user agent, the
content length, each propagator field), the attributes are set on the span a second time right after
starting it with them, the metric attributes are filtered for both semantic
conventions, ``use_span`` is a generator context manager, and every message sent
decodes every response header. On a small request such as ClStock's ``/health``
that is most of what the distro adds besides the metric records
(bench/README.md, "What changed in the distro").

This module serves a request the way upstream does, with each of those done once:

- the request's header names are decoded and lowercased once into a map, which
  answers the Host, User-Agent and Content-Length lookups and, through a getter of
  its own, the global propagator (same names, same decoded values);
- the server span is started as upstream's ``_start_internal_or_server_span`` starts
  it, inline (remote parent from the propagator, its context attached until the end;
  INTERNAL under a current span), with the same attributes in the same order; the
  distro's pipeline tracer is handed a copy of them (``start_span_adopting``) when
  they are plain values, as it then stores them as given anyway; they are set again,
  as upstream does, only when the span does not already hold exactly them (a sampler
  or span processor changed them): otherwise setting them again changes nothing;
- the metrics' attributes are upstream's filtering of the request's (same names,
  same order), the names kept worked out once per sequence of attribute names;
- the status, ``error.type`` and the response propagator go through upstream's own
  ``set_status_code`` and setter; the span ends at the last body message; the
  exception handling is ``use_span``'s (recorded, status ERROR, while recording);
- the duration, active-requests and body-size metrics get the same values, the same
  attributes and the same exemplar context, with upstream's quirks kept: the
  response size is the instance's last ``content_length_header``, the request size
  needs a ``Content-Length`` header, ``server.address`` is the scope's server with
  its port. With the metric-record cache active, the duration and the response size
  wait for the collection with their time and span context, as the instrumentors'
  durations do (``instrumentors/_machinery/durations.py``): handed over at once, with
  the exemplars the SDK would keep. The active requests' +1 and -1 that the SDK
  would offer no exemplar (no sampled span in their context) are counted live and
  added to the counter's sums when metrics are collected (``_asgi_server_metrics``): the
  same points, in any temporality, a collection in the middle of a request included.

It does not: serve websocket or lifespan scopes, other semantic-convention modes
than HTTP (new conventions only), middlewares with a request or response hook,
header capture, internal ``receive``/``send`` spans, subclasses of the middleware,
or an asgi module whose helpers were replaced after this patch: each of those goes
to upstream's own ``__call__`` (decided once per middleware instance). Nor does it
copy ``send``'s name and ``__wrapped__`` onto the wrapper it passes the app, nor
write ``url.path``/``url.query`` from the route template into its attribute dict at
the end of the request (upstream does, and reads neither afterwards).

The judge is ``bench/instructions.py --endpoints health``; the differential test is
tests/distro/test_asgi_server_path.py. ``OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH=false``
leaves upstream's ``__call__`` in place.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from timeit import default_timer
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import context, trace
from opentelemetry.instrumentation import utils as instrumentation_utils
from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import (
    INVALID_SPAN,
    Span,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH
from clstock_otel_distro.patches._asgi_server_metrics import (
    _later_records,
    _live_counts,
)
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_MODULE = "opentelemetry.instrumentation.asgi"
_CLASS = "OpenTelemetryMiddleware"
_SYMBOL = f"{_CLASS}.__call__"
# Where the once-per-instance answer is kept: True (lean) or False (upstream's).
_DECIDED = "_clstock_asgi_fast_path"
# Where an eligible instance keeps its waiting durations and response sizes, and its
# live count of active requests: (_Later | None, _Later | None, _LiveCounts | None).
_LATER = "_clstock_asgi_later"

# Module-level names of the asgi module this path calls or stands in for: if any is
# replaced after the patch (another tool wrapped it), the instance is served by
# upstream's __call__, which would use the replacement.
_MODULE_HELPERS = (
    "_decode_header_item", "_parse_active_request_count_attrs", "_parse_duration_attrs",
    "_start_internal_or_server_span", "asgi_getter", "asgi_setter",
    "collect_request_attributes", "detect_synthetic_user_agent",
    "get_global_response_propagator", "get_host_port_url_tuple",
    "is_http_instrumentation_enabled", "sanitize_method", "set_status_code",
    "_set_http_method", "_server_active_requests_count_attrs_new",
    "_server_duration_attrs_new", "_StabilityMode", "USER_AGENT_SYNTHETIC_TYPE",
)
# The methods of the middleware __call__ reaches; a class patched elsewhere is upstream's.
_CLASS_METHODS = ("_get_otel_receive", "_get_otel_send", "_set_send_span", "_set_server_span")
# The instance attributes read per request.
_INSTANCE_ATTRIBUTES = (
    "app", "tracer", "excluded_urls", "default_span_details", "duration_histogram_new",
    "active_requests_counter", "server_response_body_size_histogram",
    "server_request_body_size_histogram", "content_length_header",
)
# Methods sanitize_method returns unchanged whatever the environment (it returns any
# method upper-cased when OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS is
# set, and these are already upper-case); checked against it when the patch applies.
_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))


def _shape(module: ModuleType) -> str | None:
    cls = getattr(module, _CLASS, None)
    if not isinstance(cls, type):
        return f"{_CLASS} is missing"
    call = cls.__dict__.get("__call__")
    if not inspect.iscoroutinefunction(call):
        return f"{_SYMBOL} is not a coroutine function"
    if list(inspect.signature(call).parameters) != ["self", "scope", "receive", "send"]:
        return f"{_SYMBOL} no longer takes (scope, receive, send)"
    missing = [name for name in _MODULE_HELPERS if not hasattr(module, name)]
    missing += [name for name in _CLASS_METHODS if not hasattr(cls, name)]
    if missing:
        return f"{_MODULE} has no {', '.join(missing)}"
    if any(module.sanitize_method(method) != method for method in _KNOWN_METHODS):
        return "sanitize_method no longer keeps the standard methods"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``OpenTelemetryMiddleware.__call__`` of ``module`` (the asgi instrumentation)."""
    cls = getattr(module, _CLASS)
    original = cls.__dict__["__call__"]
    seen = {name: getattr(module, name) for name in _MODULE_HELPERS}
    seen_methods = {name: getattr(cls, name) for name in _CLASS_METHODS}
    _bind_module(module)
    wrapt.wrap_function_wrapper(module, _SYMBOL, _choose(module, cls, seen, seen_methods))

    def undo() -> None:
        cls.__call__ = original

    return undo


PATCH = UpstreamPatch(
    name="asgi-server-path", distribution="opentelemetry-instrumentation-asgi",
    versions=">=0.66b0,<0.67",
    module=_MODULE, symbol=_SYMBOL,
    purpose="ASGI server spans and metrics built once per request",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH,
)


def _choose(module: ModuleType, cls: type, seen: dict[str, Any],
            seen_methods: dict[str, Any]) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        lean = instance.__dict__.get(_DECIDED)
        if lean is None:
            lean = _eligible(module, cls, seen, seen_methods, instance)
            if lean:
                instance.__dict__[_LATER] = (*_later_records(instance),
                                             _live_counts(instance))
            instance.__dict__[_DECIDED] = lean
        if lean and len(args) == 3 and not kwargs:
            return _serve(wrapped, instance, *args)
        return wrapped(*args, **kwargs)

    return call


def _eligible(module: ModuleType, cls: type, seen: dict[str, Any],
              seen_methods: dict[str, Any], middleware: Any) -> bool:
    """Whether this middleware's requests are ones the lean path serves exactly as upstream."""
    try:
        if type(middleware) is not cls:
            return False
        if any(getattr(module, name) is not value for name, value in seen.items()):
            return False
        if any(getattr(cls, name) is not value for name, value in seen_methods.items()):
            return False
        for name in _INSTANCE_ATTRIBUTES:
            getattr(middleware, name)
        if not _is_upstream_start(module._start_internal_or_server_span):
            return False
        return (
            middleware._sem_conv_opt_in_mode is module._StabilityMode.HTTP
            and middleware.server_request_hook is None
            and middleware.client_request_hook is None
            and middleware.client_response_hook is None
            and middleware.exclude_receive_span is True
            and middleware.exclude_send_span is True
            and not middleware.http_capture_headers_server_request
            and not middleware.http_capture_headers_server_response
            and middleware.duration_histogram_old is None
            and middleware.server_response_size_histogram is None
            and middleware.server_request_size_histogram is None
            and middleware.duration_histogram_new is not None
            and middleware.server_response_body_size_histogram is not None
            and middleware.server_request_body_size_histogram is not None
        )
    except Exception:  # an attribute missing or anything unexpected: upstream's way
        return False


def _is_upstream_start(start: Any) -> bool:
    """Whether the asgi module's ``_start_internal_or_server_span`` is upstream's own
    function (which :func:`_serve` does inline), not another tool's replacement."""
    return (start.__class__ is _FUNCTION_TYPE
            and start is getattr(instrumentation_utils, "_start_internal_or_server_span", None)
            and start.__module__ == instrumentation_utils.__name__)


_FUNCTION_TYPE = type(_is_upstream_start)


def _bind_module(module: ModuleType) -> None:
    """Bind the asgi module's helpers and constants this path uses (when the patch applies)."""
    global _decode, _is_enabled, _response_propagator, _setter, \
        _set_status_code, _sanitize_method, _set_http_method, _synthetic_type, \
        _select_active, _select_duration, _HTTP_MODE, _SYNTHETIC, _asgi_getter
    _decode = module._decode_header_item
    _is_enabled = module.is_http_instrumentation_enabled
    _response_propagator = module.get_global_response_propagator
    _setter = module.asgi_setter
    _asgi_getter = module.asgi_getter
    _set_status_code = module.set_status_code
    _sanitize_method = module.sanitize_method
    _set_http_method = module._set_http_method
    _synthetic_type = module.detect_synthetic_user_agent
    _synthetic_types.clear()
    _select_active = _Selection(module._server_active_requests_count_attrs_new)
    _select_duration = _Selection(module._server_duration_attrs_new)
    _HTTP_MODE = module._StabilityMode.HTTP
    _SYNTHETIC = module.USER_AGENT_SYNTHETIC_TYPE


_decode: Callable[[bytes], str]
_is_enabled: Callable[[], bool]
_response_propagator: Callable[[], Any]
_setter: Any
_asgi_getter: Any
_set_status_code: Callable[..., None]
_sanitize_method: Callable[[str], str]
_set_http_method: Callable[..., None]
_synthetic_type: Callable[[str | None], str | None]
_select_active: _Selection
_select_duration: _Selection
_HTTP_MODE: Any
_SYNTHETIC: str


class _Selection:
    """Upstream's filtering of the request's attributes for one metric (the names it
    keeps, in the request attributes' order), with the order worked out once per
    sequence of attribute names: the request's attribute names are nearly always the
    same few sequences."""

    __slots__ = ("keys", "orders")

    def __init__(self, keys: Any) -> None:
        self.keys = frozenset(keys)
        self.orders: dict[tuple, tuple] = {}

    def __call__(self, attributes: dict[str, Any]) -> dict[str, Any]:
        names = tuple(attributes)
        order = self.orders.get(names)
        if order is None:
            order = tuple(name for name in names if name in self.keys)
            if len(self.orders) < _MAX_ORDERS:
                self.orders[names] = order
        return dict(zip(order, map(attributes.__getitem__, order)))


# Sequences of attribute names a _Selection remembers; others are worked out each time.
_MAX_ORDERS = 64


class _RequestHeaders(Getter[Any]):
    """The request's headers, names decoded and lowercased once; the propagator's getter.

    ``get`` answers as upstream's ``asgi_getter.get`` answers for the same scope: the
    decoded values of every header whose decoded, lowercased name is the key, or None.
    """

    __slots__ = ("names", "scope")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        names: dict[str, list[bytes]] = {}
        headers = scope.get("headers")
        if headers:
            for raw_name, raw_value in headers:
                name = _decode(raw_name).lower()
                values = names.get(name)
                if values is None:
                    names[name] = [raw_value]
                else:
                    values.append(raw_value)
        self.names = names

    def get(self, carrier: Any, key: str) -> list[str] | None:
        if carrier is not self.scope:
            return _asgi_getter.get(carrier, key)
        values = self.names.get(key.lower())
        if values is None:
            return None
        return [_decode(value) for value in values]

    def keys(self, carrier: Any) -> list[str]:
        return _asgi_getter.keys(carrier)


def _response_content_length(message: Any) -> str | None:
    """The first ``content-length`` of a message, as ``asgi_getter.get(message, ...)[0]``."""
    headers = message.get("headers")
    if not headers:
        return None
    for raw_name, raw_value in headers:
        if raw_name == b"content-length":
            return _decode(raw_value)
        # A lower-case ASCII name decodes and lowercases to itself: it is not this one.
        if raw_name.__class__ is bytes and raw_name.isascii() and raw_name.islower():
            continue
        if _decode(raw_name).lower() == "content-length":
            return _decode(raw_value)
    return None


_synthetic_types: dict[str, str | None] = {}
_MAX_USER_AGENTS = 256
_UNKNOWN: Any = object()


def _request_attributes(scope: Any, headers: _RequestHeaders,
                        server_host: str, port: Any) -> dict[str, Any]:
    """``collect_request_attributes(scope, HTTP)``, with the header map."""
    result: dict[str, Any] = {}
    query_string = scope.get("query_string")
    if query_string and isinstance(query_string, bytes):
        query_string = query_string.decode("utf8")
    scheme = scope.get("scheme")
    if scheme:
        result[URL_SCHEME] = scheme
    if server_host:
        result[SERVER_ADDRESS] = server_host
    if port:
        try:  # noqa: SIM105 - per request: contextlib.suppress costs a context manager
            result[SERVER_PORT] = int(port)
        except (ValueError, TypeError):
            pass
    flavor = scope.get("http_version")
    if flavor:
        result[NETWORK_PROTOCOL_VERSION] = flavor
    path = scope.get("path")
    if path:
        result[URL_PATH] = path
        if query_string:
            result[URL_QUERY] = query_string
    method = scope.get("method", "")
    if method:
        if method in _KNOWN_METHODS:
            result[HTTP_REQUEST_METHOD] = method
        else:
            _set_http_method(result, method, _sanitize_method(method), _HTTP_MODE)
    user_agent = headers.names.get("user-agent")
    if user_agent:
        user_agent_value = _decode(user_agent[0])  # a str: normalize_user_agent keeps it
        if user_agent_value:
            result[USER_AGENT_ORIGINAL] = user_agent_value
        # detect_synthetic_user_agent answers from the text alone (a clients' few
        # user agents come again and again): remembered, up to _MAX_USER_AGENTS.
        synthetic_type = _synthetic_types.get(user_agent_value, _UNKNOWN)
        if synthetic_type is _UNKNOWN:
            synthetic_type = _synthetic_type(user_agent_value)
            if len(_synthetic_types) < _MAX_USER_AGENTS:
                _synthetic_types[user_agent_value] = synthetic_type
        if synthetic_type:
            result[_SYNTHETIC] = synthetic_type
    client = scope.get("client") if "client" in scope else None
    if client is not None:
        if client[0]:
            result[CLIENT_ADDRESS] = client[0]
        if client[1]:
            try:  # noqa: SIM105 - per request
                result[CLIENT_PORT] = int(client[1])
            except (ValueError, TypeError):
                pass
    return result


def _adoptable(attributes: dict[str, Any], tracer: Any) -> bool:
    """Whether the server span's attributes meet ``start_span_adopting``'s terms:
    non-empty ``str`` keys; ``int``, ``float``, ``bool`` or ``str`` values, a ``str``
    within the tracer's length limit. Checked in C (``map``): the classes exactly, the
    length of every value as text (a ``str`` is its own text; a number whose text is
    longer than the limit makes this answer False, which only costs the check).
    """
    values = attributes.values()
    if not _ADOPTABLE_VALUES.issuperset(map(type, values)):
        return False
    if not _STR_ONLY.issuperset(map(type, attributes)) or "" in attributes:
        return False
    limit = tracer.attribute_length_limit
    return limit.__class__ is int and max(map(len, map(str, values)), default=0) <= limit


_ADOPTABLE_VALUES = frozenset((str, int, float, bool))
_STR_ONLY = frozenset((str,))
_NOTHING_LATER = (None, None, None)


async def _serve(wrapped: Callable[..., Any], self: Any, scope: Any, receive: Any,
                 send: Any) -> None:
    """Upstream's ``__call__`` for an eligible middleware (see the module docstring)."""
    start = default_timer()
    if not _is_enabled():
        return await self.app(scope, receive, send)
    if scope["type"] != "http":  # websocket (and lifespan): upstream's own
        return await wrapped(scope, receive, send)

    headers = _RequestHeaders(scope)
    server = scope.get("server") or ["0.0.0.0", 80]
    port = server[1]
    server_host = server[0] + (":" + str(port) if str(port) != "80" else "")
    excluded_urls = self.excluded_urls
    if excluded_urls:
        host = headers.names.get("host")
        url_host = _decode(host[0]) if host else server_host
        url = scope.get("scheme", "http") + "://" + url_host + scope.get("path", "")
        if excluded_urls.url_disabled(url):
            return await self.app(scope, receive, send)

    span_name, additional_attributes = self.default_span_details(scope)
    attributes = _request_attributes(scope, headers, server_host, port)
    attributes.update(additional_attributes)
    # Upstream's _start_internal_or_server_span, inline: under no current span, the
    # propagator's context (attached until the end) and a SERVER span; else INTERNAL.
    token = None
    if trace.get_current_span() is INVALID_SPAN:
        parent_context = instrumentation_utils.extract(scope, getter=headers)
        token = context.attach(parent_context)
        kind = SpanKind.SERVER
    else:
        parent_context = context.get_current()
        kind = SpanKind.INTERNAL
    tracer = self.tracer
    adopting = getattr(tracer, "start_span_adopting", None)
    given = None
    if adopting is not None and _adoptable(attributes, tracer):
        # The pipeline tracer keeps this copy as the span's attributes: the same
        # items, in the same order, as start_span would store.
        given = dict(attributes)
        span = adopting(span_name, parent_context, kind, given)
    else:
        span = tracer.start_span(name=span_name, context=parent_context, kind=kind,
                                 start_time=None, attributes=attributes)
    active_requests_attributes = _select_active(attributes)
    durations, sizes, live = self.__dict__.get(_LATER) or _NOTHING_LATER
    counted = None if live is None else live.slot(active_requests_attributes)
    # The +1 is made in parent_context (the current context now): see _LiveCounts.
    if counted is None or not live.count(counted, 1, parent_context):
        self.active_requests_counter.add(1, active_requests_attributes)
    span_context = set_span_in_context(span)  # what use_span attaches

    async def otel_send(message: Any) -> None:
        message_type = message["type"]
        status_code = None
        if message_type == "http.response.start":
            status_code = message["status"]
        elif message_type == "websocket.send":
            status_code = 200
        if status_code:
            _set_status_code(span, status_code, attributes, _HTTP_MODE)
        propagator = _response_propagator()
        if propagator:
            propagator.inject(
                message,
                context=set_span_in_context(span, trace.context_api.Context()),
                setter=_setter,
            )
        content_length = _response_content_length(message)
        if content_length:
            try:  # noqa: SIM105 - per message
                self.content_length_header = int(content_length)
            except ValueError:
                pass
        await send(message)
        if message_type == "http.response.body" and not message.get("more_body", False):
            span.end()

    try:
        try:
            # trace.use_span(span, end_on_exit=False), without the generator.
            use_token = context.attach(span_context)
            try:
                # Upstream sets every attribute again: a change only when the span
                # does not hold exactly these already (it does when it kept the copy
                # it was handed: nothing ran since).
                if (given is None or getattr(span, "_attributes", None) is not given
                        ) and span.is_recording():
                    held = getattr(span, "attributes", None)
                    if held is None or held != attributes or list(held) != list(attributes):
                        for key, value in attributes.items():
                            span.set_attribute(key, value)
                await self.app(scope, receive, otel_send)
            finally:
                context.detach(use_token)
        except Exception as exc:
            if isinstance(span, Span) and span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(status_code=StatusCode.ERROR,
                                       description=f"{type(exc).__name__}: {exc}"))
            raise
    finally:
        duration_s = default_timer() - start
        duration_attributes = _select_duration(attributes)
        duration = max(duration_s, 0)
        if durations is None or not durations.add(duration, duration_attributes, span):
            self.duration_histogram_new.record(duration, duration_attributes,
                                               context=span_context)
        # The -1 is made in the current context (parent_context, use_span's detached).
        if counted is None or not live.count(counted, -1, context.get_current()):
            self.active_requests_counter.add(-1, active_requests_attributes)
        size = self.content_length_header
        if size and (sizes is None or not sizes.add(size, duration_attributes, span)):
            self.server_response_body_size_histogram.record(
                size, duration_attributes, context=span_context)
        request_size = headers.names.get("content-length")
        if request_size:
            try:
                request_size_amount = int(_decode(request_size[0]))
            except ValueError:
                pass
            else:
                self.server_request_body_size_histogram.record(
                    request_size_amount, duration_attributes, context=span_context)
        if token:
            context.detach(token)
        if span.is_recording():
            span.end()
