"""The OTLP/HTTP clients the distro's configuration builds send with urllib3.

Each OTLP/HTTP exporter of the SDK (spans, metrics, logs: the same code path,
``opentelemetry.exporter.otlp.proto.http._common._build_transport``) gets a
``RequestsHTTPTransport``, and every batch pays requests' machinery around the
urllib3 connection pool it ends in (about four times the instructions of the
request itself: bench/README.md). The package that ships it also ships
``Urllib3HTTPTransport``, which sends straight through a urllib3 pool. For the
duration of the configurator's SDK call (:func:`sdk_builds_urllib3_clients`), each
``_OTLPHTTPClient`` the SDK builds on that thread swaps its requests transport for
the urllib3 one, but only where the request on the wire and its outcome stay the
same, which is decided once, when the client is built:

- the endpoint is plain ``http://`` (with https, requests' CA choice, certifi or
  ``REQUESTS_CA_BUNDLE``, is not urllib3's), without user info (requests turns it
  into an ``Authorization`` header), and requests would not rewrite it;
- no proxy applies to it (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, as requests
  reads them) and ``~/.netrc`` (``NETRC``) has no credentials for its host;
- the session is the one the transport made itself: no session in the exporter
  arguments, no ``OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER``, and the
  session is a default ``requests.Session`` (no auth, hooks, cookies, proxies,
  custom headers or mounted adapters);
- every header value passes requests' own validity check.

The headers requests adds to every request (``Accept-Encoding``, ``Accept: */*``,
``Connection: keep-alive``) are added to the client's own headers, so the same
header set goes on the wire (urllib3 decodes the same response encodings), and the
pool keeps up to ten connections per host, as requests' adapter does. A read
timeout counts as a connection error (retried), as requests' ``ReadTimeout`` does:
the SDK's urllib3 transport alone would give the batch up. Compression,
``_submit``'s immediate retry of a connection error, the status codes and
``Retry-After`` the client and the durable sender read, and the fork reset
(:mod:`.otlp_http_durable`) work as before. Two differences, by design: the proxy
variables and ``~/.netrc`` are read once, when the client is built (requests reads
them per request); and a cookie a server sets is not sent back (requests keeps a
cookie jar; OTLP receivers set none). The exporter's timeout bounds the whole
attempt (urllib3's ``total``) where requests allowed it for connecting and again
for each read: the same on a collector that answers in time, stricter on one that
does not. Anything unexpected keeps requests. Off with
``OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3=false``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3
from clstock_otel_distro.patches import registry
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch", "requests_kept_because", "sdk_builds_urllib3_clients"]

_logger = logging.getLogger(__name__)

_MODULE = "opentelemetry.exporter.otlp.common.http"
_CLASS = "_OTLPHTTPClient"
_TRANSPORT_DISTRIBUTION = "opentelemetry-exporter-http-transport"
_TRANSPORT_VERSIONS = ">=0.66b0,<0.67"
_REQUESTS_MODULE = "opentelemetry.exporter.http.transport._requests"
_URLLIB3_MODULE = "opentelemetry.exporter.http.transport._urllib3"
# The SDK's _load_session_from_envvar: the general variable, then the signal's own.
_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"
_CREDENTIAL_PROVIDER_BY_KIND = {
    "spans": "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "metrics": "OTEL_PYTHON_EXPORTER_OTLP_HTTP_METRICS_CREDENTIAL_PROVIDER",
    "logs": "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
}
# Exporter arguments that bring their own session or transport.
_OWN_TRANSPORT_ARGUMENTS = ("session", "_transport")


class _Scope:
    """The configurator's SDK call in progress: its thread, and why requests stays for all."""

    thread: int | None = None
    kept_because: str | None = None


_scope = _Scope()


def _shape(module: ModuleType) -> str | None:
    client_class = getattr(module, _CLASS, None)
    if client_class is None:
        return f"{_CLASS} is missing"
    parameters = list(inspect.signature(client_class.__init__).parameters)
    missing = [name for name in ("transport", "endpoint", "kind", "headers")
               if name not in parameters]
    if missing:
        return f"{_CLASS}.__init__ takes no {', '.join(missing)}"
    # The attributes read and replaced, checked on a real (never used) client.
    client = client_class(transport=None, endpoint="http://127.0.0.1:9/v1/traces", kind="spans",
                          headers={"a": "b"})
    if client.__dict__.get("_transport", 0) is not None or client.__dict__.get("_endpoint") \
            != "http://127.0.0.1:9/v1/traces" or client.__dict__.get("_headers") != {"a": "b"} \
            or client.__dict__.get("_kind") != "spans":
        return f"{_CLASS} no longer keeps _transport, _endpoint, _headers and _kind"
    return _transport_shape()


def _transport_shape() -> str | None:
    """The transport classes (another distribution) and urllib3 are the verified ones."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = registry.installed_version(_TRANSPORT_DISTRIBUTION)
    if version is None:
        return f"{_TRANSPORT_DISTRIBUTION} is not installed"
    if not SpecifierSet(_TRANSPORT_VERSIONS).contains(Version(version), prereleases=True):
        return f"{_TRANSPORT_DISTRIBUTION} {version} is outside the verified range " \
               f"{_TRANSPORT_VERSIONS}"
    import requests
    import urllib3
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

    if int(urllib3.__version__.split(".")[0]) != 2:
        return f"urllib3 {urllib3.__version__} is not the verified 2.x"
    with requests.Session() as session:
        if getattr(RequestsHTTPTransport(session=session), "_session", None) is not session:
            return "RequestsHTTPTransport no longer keeps its session in _session"
    pool = getattr(Urllib3HTTPTransport(verify=True, cert=None), "_pool", None)
    if not isinstance(pool, urllib3.PoolManager) or not isinstance(
            getattr(pool, "connection_pool_kw", None), dict):
        return "Urllib3HTTPTransport no longer keeps a PoolManager in _pool"
    return None


# ---------------------------------------------------------------------------- decision


def _session_problem(session: Any) -> str | None:
    """What makes ``session`` other than a default ``requests.Session``, or None."""
    import requests
    from requests.adapters import HTTPAdapter

    if type(session) is not requests.Session:
        return f"the session is a {type(session).__name__}"
    fresh = requests.Session()
    try:
        if session.auth is not None:
            return "the session has auth"
        if session.proxies or session.params or len(session.cookies):
            return "the session has proxies, parameters or cookies"
        if session.hooks != fresh.hooks:
            return "the session has hooks"
        if {k.lower(): v for k, v in session.headers.items()} != \
                {k.lower(): v for k, v in fresh.headers.items()}:
            return "the session has headers of its own"
        if session.trust_env is not True or session.stream is not False:
            return "the session's trust_env or stream was changed"

        def adapter_settings(candidate: Any) -> list[tuple[Any, ...]]:
            return [(prefix, type(adapter), adapter._pool_connections, adapter._pool_maxsize,
                     adapter._pool_block, repr(adapter.max_retries))
                    for prefix, adapter in candidate.adapters.items()]

        if any(type(adapter) is not HTTPAdapter for adapter in session.adapters.values()) \
                or adapter_settings(session) != adapter_settings(fresh):
            return "the session has adapters of its own"
    finally:
        fresh.close()
    return None


def _endpoint_problem(endpoint: Any) -> str | None:
    """What keeps requests for this endpoint (scheme, proxy, netrc), or None."""
    import requests
    from requests.utils import get_environ_proxies, get_netrc_auth, select_proxy
    from urllib3.util import parse_url

    if not isinstance(endpoint, str) or not endpoint.isascii():
        return "the endpoint is not a plain ASCII URL"
    parsed = parse_url(endpoint)
    if (parsed.scheme or "").lower() != "http" or not parsed.host:
        return "the endpoint is not http://"
    if parsed.auth is not None:
        return "the endpoint carries user info"
    prepared = requests.PreparedRequest()
    prepared.prepare_url(endpoint, None)
    if prepared.url != endpoint or parse_url(endpoint).url != endpoint:
        return "requests would rewrite the endpoint"
    proxy = select_proxy(endpoint, get_environ_proxies(endpoint, no_proxy=None))
    if proxy is not None:
        return "a proxy applies to the endpoint"
    if get_netrc_auth(endpoint) is not None:
        return "~/.netrc has credentials for the endpoint's host"
    return None


def _headers_problem(headers: Mapping[str, str]) -> str | None:
    from requests.exceptions import InvalidHeader
    from requests.utils import check_header_validity

    for header in headers.items():
        try:
            check_header_validity(header)
        except InvalidHeader:
            return f"requests refuses the header {header[0]!r}"
    return None


def requests_kept_because(client: Any) -> str | None:
    """Why ``client`` must keep its requests transport, or None when urllib3 sends alike."""
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport

    transport = client._transport
    if type(transport) is not RequestsHTTPTransport:
        return f"its transport is a {type(transport).__name__}"
    if _scope.kept_because is not None:
        return _scope.kept_because
    for variable in (_CREDENTIAL_PROVIDER, _CREDENTIAL_PROVIDER_BY_KIND.get(client._kind)):
        if variable and os.environ.get(variable):
            return f"{variable} provides its session"
    return (_session_problem(transport._session) or _endpoint_problem(client._endpoint)
            or _headers_problem(client._headers))


@functools.lru_cache(maxsize=1)
def _urllib3_transport_class() -> type:
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    from urllib3.exceptions import ReadTimeoutError

    class ClStockUrllib3HTTPTransport(Urllib3HTTPTransport):
        """The SDK's urllib3 transport; a read timeout is a connection error, as with requests."""

        # Urllib3HTTPTransport (0.66b1) counts connect timeouts, refused and dropped
        # connections as connection errors, but a POST's read timeout comes out of
        # urllib3 as ReadTimeoutError (never retried for POST, so not wrapped in
        # MaxRetryError), which it does not list: the client would give the batch up
        # where requests' ReadTimeout has it retried.
        def is_connection_error(self, exception: Exception | None) -> bool:
            return isinstance(exception, ReadTimeoutError) or super().is_connection_error(exception)

    return ClStockUrllib3HTTPTransport


def _use_urllib3(client: Any) -> None:
    """Give ``client`` the SDK's urllib3 transport, where it sends as requests would."""
    try:
        because = requests_kept_because(client)
        if because is not None:
            _logger.debug("clstock-otel: the OTLP/HTTP %s exporter to %s sends with requests: %s",
                          client._kind, client._endpoint, because)
            return
        from requests.adapters import DEFAULT_POOLSIZE
        from requests.sessions import merge_setting
        from requests.structures import CaseInsensitiveDict

        old = client._transport
        session = old._session
        transport = _urllib3_transport_class()(verify=session.verify, cert=session.cert)
        # requests' adapter keeps up to DEFAULT_POOLSIZE connections per host; urllib3's
        # PoolManager one (a second concurrent request's connection would be discarded
        # with a warning).
        transport._pool.connection_pool_kw["maxsize"] = DEFAULT_POOLSIZE
        # The headers requests sends: the session's defaults, then the client's over them
        # (requests' own merge, same order).
        headers = dict(merge_setting(client._headers, session.headers,
                                     dict_class=CaseInsensitiveDict))
    except Exception as exc:  # any doubt: requests stays
        _logger.debug("clstock-otel: the OTLP/HTTP exporter keeps requests (%s: %s)",
                      type(exc).__name__, exc)
        return
    client._headers = headers
    client._transport = transport
    old.close()
    _logger.debug("clstock-otel: the OTLP/HTTP %s exporter to %s sends with urllib3 (plain http, "
                  "no proxy, default session: the same request as requests')",
                  client._kind, client._endpoint)


# ---------------------------------------------------------------------------- patch


def patch(module: ModuleType) -> Callable[[], None]:
    """Clients built in the configurator's SDK call (its thread) may send with urllib3."""
    client_class = getattr(module, _CLASS)
    original_init = client_class.__dict__["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if _scope.thread == threading.get_ident():
            _use_urllib3(self)

    __init__.__doc__ = original_init.__doc__
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    client_class.__init__ = __init__

    def undo() -> None:
        client_class.__init__ = original_init

    return undo


def _own_transports(exporter_args_map: Any) -> str | None:
    for exporter, arguments in (exporter_args_map or {}).items():
        given = [name for name in _OWN_TRANSPORT_ARGUMENTS if name in (arguments or {})]
        if given:
            return f"the exporter arguments give {getattr(exporter, '__name__', exporter)} " \
                   f"its {given[0]}"
    return None


@contextlib.contextmanager
def sdk_builds_urllib3_clients(sdk_kwargs: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, OTLP/HTTP clients built on this thread send with urllib3 where
    they can. ``sdk_kwargs``: what the SDK's ``_initialize_components`` gets."""
    # WAITING: the SDK's call imports the module (and the patch applies) on this thread.
    if registry.install(PATCH) not in (registry.PatchState.ACTIVE, registry.PatchState.WAITING):
        yield
        return
    _scope.thread = threading.get_ident()
    _scope.kept_because = _own_transports(sdk_kwargs.get("exporter_args_map"))
    try:
        yield
    finally:
        _scope.thread = None
        _scope.kept_because = None
        registry.uninstall(PATCH)


PATCH = UpstreamPatch(
    name="otlp-http-urllib3",
    distribution="opentelemetry-exporter-otlp-common",
    module=_MODULE,
    symbol=f"{_CLASS}.__init__",
    versions=">=0.66b0,<0.67",
    purpose="OTLP/HTTP batches sent through urllib3 instead of requests (same request)",
    shape=_shape,
    apply=patch,
    switch=OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3,
)
