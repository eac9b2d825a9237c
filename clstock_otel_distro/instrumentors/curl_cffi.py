"""Traces HTTP requests made with curl_cffi, the HTTP client yfinance uses.

One CLIENT span per ``Session.request`` / ``AsyncSession.request`` call (hence per
``get``/``post``/... and per module-level ``curl_cffi.requests.get``), named after the
method as the stable HTTP semantic conventions say (``GET``), with:

- ``http.request.method`` (``_OTHER`` + ``http.request.method_original`` for
  non-standard methods), ``url.full``, ``server.address``, ``server.port``,
  ``http.response.status_code``;
- ``url.full`` redacted: credentials become ``REDACTED:REDACTED`` and the values of
  sensitive query parameters ``REDACTED`` (the semconv list plus session tokens such
  as Yahoo's ``crumb``: see ``SENSITIVE_QUERY_PARAMETERS``);
- on a status >= 400, status ERROR and ``error.type`` the status code; on an
  exception, ``error.type`` the exception's class (and the exception event).

The W3C ``traceparent`` is injected into the outgoing headers (a copy: the caller's
headers object is never modified). ``OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS`` (else
``OTEL_PYTHON_EXCLUDED_URLS``) lists URL patterns not to trace. Durations go to the
``http.client.request.duration`` histogram with the stable HTTP attributes. Usage::

    CurlCffiInstrumentor().instrument(tracer_provider=provider)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from opentelemetry.context import get_current
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.http import (
    ExcludeList,
    get_excluded_urls,
    remove_url_credentials,
    sanitize_method,
)

from clstock_otel_distro.instrumentors._patching import (
    AttributePatch,
    MeasuredCall,
    Operation,
    PatchingInstrumentor,
    Target,
    Telemetry,
    TracedCall,
    TraceSpec,
    Wrapper,
    WrapperFactory,
    driver_for,
    install_all,
)

# One list of secret query parameters for the whole distro (the span processor's).
from clstock_otel_distro.sdk.redaction import REDACTED, SENSITIVE_QUERY_PARAMETERS
from clstock_otel_distro.semconv import (
    ERROR_TYPE,
    HTTP_CLIENT_REQUEST_DURATION,
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    SERVER_ADDRESS,
    SERVER_PORT,
    URL_FULL,
    URL_SCHEME,
)

__all__ = ["SENSITIVE_QUERY_PARAMETERS", "CurlCffiInstrumentor", "redact_url"]

_instruments = ("curl_cffi >= 0.6",)


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def redact_url(url: str) -> str:
    """``url`` without credentials or sensitive query values, as ``url.full`` records it."""
    url = remove_url_credentials(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name.lower() in SENSITIVE_QUERY_PARAMETERS for name, _ in pairs):
        return url  # left exactly as sent
    query = urlencode(
        [(name, REDACTED if name.lower() in SENSITIVE_QUERY_PARAMETERS else value)
         for name, value in pairs])
    return urlunsplit(parts._replace(query=query))


def _with_params(url: str, params: Any) -> str:
    """``url`` with query ``params`` (a mapping or pairs) merged in, as curl_cffi does."""
    try:  # curl_cffi's own merge (replaces existing keys, JSON-encodes bools)
        from curl_cffi.requests.utils import update_url_params

        return update_url_params(url, params)
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    expanded = []
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            expanded.extend((name, item) for item in value)
        else:
            expanded.append((name, value))
    query = urlencode(expanded)
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _with_trace_headers(headers: Any, carrier: Mapping[str, str]) -> Any:
    """A copy of ``headers`` (any form curl_cffi accepts) with ``carrier`` set in it."""
    if headers is None:
        return dict(carrier)
    if isinstance(headers, dict):
        names = {name.lower() for name in carrier}
        kept = {k: v for k, v in headers.items() if not (isinstance(k, str)
                                                         and k.lower() in names)}
        return {**kept, **carrier}
    from curl_cffi.requests.headers import Headers  # curl_cffi is running this request

    merged = Headers(headers)  # a copy, from a Headers object, mapping or sequence
    for name, value in carrier.items():
        merged[name] = value
    return merged


class _Request:
    """The parts of one request the span and the metric need."""

    __slots__ = ("host", "method", "original_method", "port", "scheme", "status", "url")

    def __init__(self, method: Any, url: str) -> None:
        original = str(method or "GET")
        self.method = sanitize_method(original)
        self.original_method = original if self.method != original.upper() else None
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        self.status: Any = None

    @property
    def span_name(self) -> str:
        return "HTTP" if self.method == "_OTHER" else self.method

    def attributes(self) -> dict[str, Any]:
        """The attributes known before the request is sent (also the metric's)."""
        attributes: dict[str, Any] = {HTTP_REQUEST_METHOD: self.method}
        if self.scheme:
            attributes[URL_SCHEME] = self.scheme
        if self.host:
            attributes[SERVER_ADDRESS] = self.host
        if self.port:
            attributes[SERVER_PORT] = self.port
        return attributes


_CLIENT = TraceSpec(kind=SpanKind.CLIENT)


class _HttpClientOperation(Operation):
    """An HTTP client request: CLIENT span, header injection, status-based errors."""

    __slots__ = ("excluded", "headers", "method", "params", "url")

    def __init__(self, telemetry: Telemetry, target: Target, excluded: ExcludeList) -> None:
        super().__init__(telemetry, target, _CLIENT)
        self.excluded = excluded
        self.method, self.url, self.params, self.headers = (
            target.arg(name) for name in ("method", "url", "params", "headers"))
        self.classifies = True  # the status code decides success, and the metric needs it

    def describe(self, instance: Any, args: tuple, kwargs: dict) -> _Request:
        """The request as curl_cffi will send it (session params and base URL applied)."""
        url = str(self.url.get(args, kwargs))
        for params in (getattr(instance, "params", None), self.params.get(args, kwargs)):
            if params:
                url = _with_params(url, params)
        base_url = getattr(instance, "base_url", None)
        if isinstance(base_url, str) and base_url:
            url = urljoin(base_url, url)
        return _Request(self.method.get(args, kwargs), url)

    def begin(self, instance: Any, args: tuple, kwargs: dict,
              activate: bool = True) -> MeasuredCall | None:
        if not is_http_instrumentation_enabled():
            return None
        try:
            request = self.describe(instance, args, kwargs)
        except Exception:  # an argument we cannot read: the request is curl_cffi's to fail
            return None
        if self.excluded.url_disabled(request.url):
            return None
        ctx = get_current()
        attributes = request.attributes()
        call: MeasuredCall
        if self.telemetry.skips_child(ctx):
            call, propagated = MeasuredCall(self, instance, args, kwargs), ctx
        else:
            span = self.start_span(ctx, request.span_name, attributes)
            if span is None:
                return None
            if span.is_recording():
                span.set_attribute(URL_FULL, redact_url(request.url))
                if request.original_method:
                    span.set_attribute(HTTP_REQUEST_METHOD_ORIGINAL, request.original_method)
            propagated = set_span_in_context(span, ctx)
            call = TracedCall(self, span, propagated, instance, args, kwargs)
        call.note = request
        carrier: dict[str, str] = {}
        inject(carrier, context=propagated)
        if carrier:
            headers = _with_trace_headers(self.headers.get(args, kwargs), carrier)
            call.args, call.kwargs = self.headers.replace(args, kwargs, headers)
        if activate:
            call.activate()
        return call

    def classify(self, call: MeasuredCall, value: Any) -> str | None:
        status = getattr(value, "status_code", None)
        if not isinstance(status, int):
            return None
        call.note.status = status
        return str(status) if status >= 400 else None

    def annotate_result(self, call: TracedCall, span: Span, value: Any,
                        failure: str | None) -> None:
        status = call.note.status
        if status is not None:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
        if failure is not None:
            span.set_attribute(ERROR_TYPE, failure)
            span.set_status(Status(StatusCode.ERROR))

    def record_duration(self, call: MeasuredCall, elapsed: float, failure: str | None) -> None:
        request: _Request = call.note
        attributes = request.attributes()
        if request.status is not None:
            attributes[HTTP_RESPONSE_STATUS_CODE] = request.status
        if failure is not None:
            attributes[ERROR_TYPE] = failure
        self.histogram.record(elapsed, attributes)


def _client_requests(telemetry: Telemetry, excluded: ExcludeList) -> WrapperFactory:
    def build(target: Target) -> Wrapper:
        return driver_for(target.function)(_HttpClientOperation(telemetry, target, excluded))

    return build


class CurlCffiInstrumentor(PatchingInstrumentor):
    """Traces curl_cffi HTTP requests as CLIENT spans and propagates the context."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        telemetry = Telemetry(
            __name__, kwargs, histogram=HTTP_CLIENT_REQUEST_DURATION,
            description="Duration of HTTP client requests.")
        requests = _client_requests(telemetry, get_excluded_urls("CURL_CFFI"))
        # Session is defined in curl_cffi.requests.session (re-exported by
        # curl_cffi.requests). Only the base classes are wrapped: a subclass
        # overriding request() (ClStock's YahooReplaySession) calls super().request(),
        # so each request still gets exactly one span. Older curl_cffi defined
        # ``get = partialmethod(request, "GET")``: those are rebound too.
        return install_all([
            AttributePatch("curl_cffi.requests.session", "Session.request", requests,
                           group=telemetry, rebind_partialmethods=True),
            AttributePatch("curl_cffi.requests.session", "AsyncSession.request", requests,
                           group=telemetry, rebind_partialmethods=True),
        ])
