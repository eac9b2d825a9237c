"""Section 7: whether the OTLP traces endpoint answers."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from clstock_otel_distro.doctor._common import (
    _OTEL_CONFIG_FILE,
    _OTEL_SDK_DISABLED,
    _environ,
    _error,
)
from clstock_otel_distro.doctor.findings import Section

# --------------------------------------------------------------------------- 6. endpoint

# Upstream's names, spelled out so that importing the doctor imports nothing else.
_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


def _http_traces_url(explicit: str | None) -> str:
    # As the OTLP/HTTP span exporter resolves it: the per-signal variable is the full
    # URL; the general one gets the signal path appended.
    from clstock_otel_distro import config

    if explicit:
        return explicit
    own = config.env_str(_TRACES_ENDPOINT)
    if own:
        return own
    base = config.env_str(_ENDPOINT) or config.DEFAULT_OTLP_ENDPOINTS["http/protobuf"]
    return f"{base.rstrip('/')}/v1/traces"


def _grpc_target(explicit: str | None) -> str:
    from clstock_otel_distro import config

    endpoint = (
        explicit
        or config.env_str(_TRACES_ENDPOINT)
        or config.env_str(_ENDPOINT)
        or config.DEFAULT_OTLP_ENDPOINTS["grpc"]
    )
    parsed = urlsplit(endpoint)
    return parsed.netloc or endpoint  # as the gRPC exporter: host:port


def _env_first(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _http_probe(url: str, timeout: float) -> tuple[bool, str]:
    import base64
    import ssl
    import urllib.error
    import urllib.request

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.util.re import parse_env_headers

    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "clstock-otel-doctor"}
    headers.update(
        parse_env_headers(
            _env_first("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or "",
            liberal=True,
        )
    )
    parts = urlsplit(url)
    if parts.username is not None:
        # The exporter's HTTP client sends URL credentials as basic auth.
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context(
            cafile=_env_first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                              "OTEL_EXPORTER_OTLP_CERTIFICATE")
        )
        cert = _env_first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                          "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        key = _env_first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
        if cert:
            context.load_cert_chain(cert, key)
    body = ExportTraceServiceRequest().SerializeToString()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return False, f"unreachable: {exc.reason}"
    except (OSError, ValueError) as exc:
        return False, f"unreachable: {_error(exc)}"
    return 200 <= status < 300, f"HTTP {status}"


def _tcp_probe(target: str, timeout: float) -> tuple[bool, str]:
    import socket

    parts = urlsplit(f"//{target}")
    try:
        host, port = parts.hostname, parts.port or 443
    except ValueError as exc:
        return False, f"not a host:port target ({exc})"
    if not host:
        return False, "no host"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"unreachable: {_error(exc)}"
    return True, "TCP connection accepted (TLS and authentication not checked)"


def _check_endpoint(section: Section, plan: Any, *, network: bool, timeout: float) -> None:
    from clstock_otel_distro import config as _config

    if not network:
        section.info("OTLP endpoint", "not checked (--no-network)")
        return
    if _config.env_bool(_OTEL_SDK_DISABLED, False):
        section.info("OTLP endpoint", f"not checked ({_OTEL_SDK_DISABLED})")
        return
    if plan is None:
        section.info("OTLP endpoint", "not checked: the exporters could not be determined")
        return
    if not plan.exporters and _config.env_str(_OTEL_CONFIG_FILE):
        section.info("OTLP endpoint", f"not checked: {_OTEL_CONFIG_FILE} decides the exporters")
        return
    exporters = plan.exporters.get("traces", {})
    others = sorted(name for name in exporters if not name.startswith("otlp_proto_"))
    if others:
        section.info("traces exporters", f"{', '.join(others)}: not checked")
    if not any(name.startswith("otlp_proto_") for name in exporters):
        if not others:
            section.info("OTLP endpoint", "not checked: traces are not exported over OTLP")
        return
    with _environ(plan.scoped_environ):
        for name, exporter in sorted(exporters.items()):
            explicit = plan.exporter_args.get(exporter, {}).get("endpoint")
            started = time.perf_counter()
            if name == "otlp_proto_http":
                target = _http_traces_url(explicit)
                what = f"traces over http/protobuf: POST {target}"
                reachable, outcome = _http_probe(target, timeout)
            elif name == "otlp_proto_grpc":
                target = _grpc_target(explicit)
                what = f"traces over grpc: {target}"
                reachable, outcome = _tcp_probe(target, timeout)
            else:
                continue
            elapsed = f"{(time.perf_counter() - started) * 1000:.0f} ms"
            if reachable:
                section.ok(what, f"{outcome} in {elapsed}")
            else:
                section.problem(
                    what,
                    f"{outcome} (after {elapsed}): spans would be dropped",
                    "start the collector (or `clstock-otel collect`), or point "
                    "OTEL_EXPORTER_OTLP_ENDPOINT at one",
                )

