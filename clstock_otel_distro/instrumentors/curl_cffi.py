"""Traces HTTP requests made with curl_cffi, the HTTP client yfinance uses.

One CLIENT span per ``Session.request`` / ``AsyncSession.request`` call (hence per
``get``/``post``/... and per module-level ``curl_cffi.requests.get``), named after the
method as the stable HTTP semantic conventions say (``GET``), with:

- ``http.request.method`` (``_OTHER`` + ``http.request.method_original`` for
  non-standard methods), ``url.full``, ``server.address``, ``server.port``,
  ``http.response.status_code``;
- ``url.full`` redacted as the span processor redacts it (``sdk/redaction.py``):
  credentials become ``REDACTED:REDACTED`` and the values of sensitive query
  parameters ``REDACTED`` (the semconv list plus session tokens such as Yahoo's
  ``crumb``), the rest of the URL left as sent;
- on a status >= 400, status ERROR and ``error.type`` the status code; on an
  exception, ``error.type`` the exception's class (and the exception event).

The W3C ``traceparent`` is injected into the outgoing headers (a copy: the caller's
headers object is never modified). ``OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS`` (else
``OTEL_PYTHON_EXCLUDED_URLS``) lists URL patterns not to trace. Durations go to the
``http.client.request.duration`` histogram with the stable HTTP attributes. Usage::

    CurlCffiInstrumentor().instrument(tracer_provider=provider)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import ExcludeList, get_excluded_urls, sanitize_method

from clstock_otel_distro.instrumentors._machinery import (
    ArgumentSlot,
    AttributePatch,
    CallDetail,
    InstrumentationTelemetry,
    PatchingInstrumentor,
    PerCall,
    Target,
    TraceSpec,
    install_all,
    result,
    traced,
)

# One redaction for the whole distro (the span processor's): one list of secret
# query parameters, and everything else in the URL left as sent.
from clstock_otel_distro.sdk.redaction import redact_url
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

__all__ = ["CurlCffiInstrumentor"]

_instruments = ("curl_cffi >= 0.6",)


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


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


class _Request(CallDetail):
    """One request as curl_cffi will send it: what its span and its duration record."""

    __slots__ = ("headers", "host", "method", "original_method", "port", "scheme", "status",
                 "url")

    def __init__(self, method: Any, url: str, headers: ArgumentSlot) -> None:
        original = str(method or "GET")
        self.method = sanitize_method(original)
        self.original_method = original if self.method != original.upper() else None
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        self.headers = headers
        self.status: int | None = None

    @property
    def span_name(self) -> str:  # type: ignore[override]
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

    def recording_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {URL_FULL: redact_url(self.url)}
        if self.original_method:
            attributes[HTTP_REQUEST_METHOD_ORIGINAL] = self.original_method
        return attributes

    def prepare(self, args: tuple, kwargs: dict, context: Any) -> tuple[tuple, dict]:
        """The call's arguments with ``traceparent`` in a copy of its headers."""
        carrier: dict[str, str] = {}
        inject(carrier, context=context)
        if not carrier:
            return args, kwargs
        headers = _with_trace_headers(self.headers.get(args, kwargs), carrier)
        return self.headers.replace(args, kwargs, headers)

    def classify(self, value: Any) -> str | None:
        """A status >= 400 is a failure, its ``error.type`` the status code."""
        status = getattr(value, "status_code", None)
        if not isinstance(status, int):
            return None
        self.status = status
        return str(status) if status >= 400 else None

    def metric_attributes(self, failure: str | None) -> dict[str, Any]:
        attributes = self.attributes()
        if self.status is not None:
            attributes[HTTP_RESPONSE_STATUS_CODE] = self.status
        if failure is not None:
            attributes[ERROR_TYPE] = failure
        return attributes


def _requests(excluded: ExcludeList) -> Callable[[Target], PerCall]:
    """The per-call hook of ``Session.request``: the request, or None not to trace it."""

    def build(target: Target) -> PerCall:
        method, url, params, headers = (
            target.arg(name) for name in ("method", "url", "params", "headers"))

        def describe(instance: Any, args: tuple, kwargs: dict) -> _Request | None:
            if not is_http_instrumentation_enabled():
                return None
            # The URL as curl_cffi will send it: session params and base URL applied.
            full = str(url.get(args, kwargs))
            for given in (getattr(instance, "params", None), params.get(args, kwargs)):
                if given:
                    full = _with_params(full, given)
            base_url = getattr(instance, "base_url", None)
            if isinstance(base_url, str) and base_url:
                full = urljoin(base_url, full)
            if excluded.url_disabled(full):
                return None
            return _Request(method.get(args, kwargs), full, headers)

        return describe

    return build


def _status_code(response: Any) -> Any:
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


class CurlCffiInstrumentor(PatchingInstrumentor):
    """Traces curl_cffi HTTP requests as CLIENT spans and propagates the context."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        telemetry = InstrumentationTelemetry(
            __name__, kwargs, histogram=HTTP_CLIENT_REQUEST_DURATION,
            description="Duration of HTTP client requests.")
        requests = traced(telemetry, TraceSpec(
            kind=SpanKind.CLIENT,
            code_attributes=False,
            result_attributes={HTTP_RESPONSE_STATUS_CODE: result(_status_code)},
            per_call=_requests(get_excluded_urls("CURL_CFFI"))))
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
