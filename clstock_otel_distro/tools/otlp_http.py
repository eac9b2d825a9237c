"""OTLP/HTTP serving for the receiver: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``.

Bodies are ``application/x-protobuf`` or ``application/json`` (OTLP JSON, read by
:func:`~clstock_otel_distro.tools.otlp_json.from_otlp_json`), optionally ``gzip`` or
``deflate`` encoded, over keep-alive HTTP/1.1 (stdlib ``http.server``, one thread per
connection). Each decoded request goes to the ``ingest`` callback the server was built
with; a refused one is answered with its status and the reason (a ``google.rpc.Status``
in the request's encoding, as OTLP/HTTP specifies) and counted through ``reject``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import socketserver
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from clstock_otel_distro.tools.otlp_data import message_types
from clstock_otel_distro.tools.otlp_json import from_otlp_json

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["MAX_BODY_BYTES", "OTLPHTTPServer"]

_logger = logging.getLogger(__name__)

# The SDK exporters drop requests above 64 MiB before compression; accept up to that.
MAX_BODY_BYTES = 64 * 1024 * 1024
_HTTP_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
_PATH_LIST = ", ".join(_HTTP_PATHS)
_PROTOBUF_TYPE = "application/x-protobuf"
_PROTOBUF_TYPES = frozenset({_PROTOBUF_TYPE, "application/protobuf"})
_JSON_TYPE = "application/json"
# The receiver takes every item it is sent, so the answer is always the empty
# Export*ServiceResponse (no partial success): nothing in protobuf, {} in JSON.
_ACCEPTED = {True: (b"{}", _JSON_TYPE), False: (b"", _PROTOBUF_TYPE)}
# google.rpc.Code values used in OTLP/HTTP error bodies.
_RPC_INVALID_ARGUMENT = 3
_RPC_INTERNAL = 13

Ingest = Callable[[str, "Message"], None]
"""Stores one decoded export request of a signal ("traces", "metrics" or "logs")."""


class _HTTPError(Exception):
    """An OTLP/HTTP request the receiver refuses, with the status to reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits_options = (16 + zlib.MAX_WBITS,)
    elif encoding == "deflate":
        # "deflate" means zlib-wrapped (RFC 9110), but some clients send raw deflate.
        wbits_options = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    else:
        raise _HTTPError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    error: zlib.error | None = None
    for wbits in wbits_options:
        decompressor = zlib.decompressobj(wbits)
        try:
            # Bounded output, so a small compressed bomb cannot exhaust memory.
            data = decompressor.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error as exc:
            error = exc
            continue
        if len(data) > MAX_BODY_BYTES:
            raise _HTTPError(413, f"decompressed body exceeds {MAX_BODY_BYTES} bytes")
        if not decompressor.eof:
            raise _HTTPError(400, f"truncated {encoding} body")
        return data
    raise _HTTPError(400, f"could not decompress {encoding} body: {error}")


def _parse_http_body(signal: str, body: bytes, as_json: bool) -> Message:
    request_type = message_types(signal)[0]
    try:
        if as_json:
            return from_otlp_json(body, request_type)
        message = request_type()
        message.ParseFromString(body)
        return message
    # Anything the parser raises means the client sent something we cannot read.
    except Exception as exc:
        kind = "OTLP JSON" if as_json else "protobuf"
        raise _HTTPError(
            400,
            f"could not decode {kind} {request_type.__name__}: {str(exc) or type(exc).__name__}",
        ) from exc


class _OTLPHTTPHandler(http.server.BaseHTTPRequestHandler):
    """Serves OTLP/HTTP export requests for the ``OTLPHTTPServer`` that owns it."""

    # HTTP/1.1 keeps connections alive, which the exporters' connection pools rely on.
    protocol_version = "HTTP/1.1"
    server_version = "clstock-otel-receiver"
    # An idle keep-alive connection is dropped after this long, freeing its thread.
    timeout = 120
    server: OTLPHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes every request to stderr; keep that at debug level.
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug("OTLP/HTTP %s: %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        signal = _HTTP_PATHS.get(path)
        if signal is None:
            self._reply_error(404, f"unknown path {path!r}; OTLP/HTTP paths are {_PATH_LIST}")
            return
        # get_content_type() defaults to text/plain; name a missing header as such.
        content_type = self.headers.get_content_type() if "Content-Type" in self.headers else ""
        if content_type != _JSON_TYPE and content_type not in _PROTOBUF_TYPES:
            self._reply_error(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}; "
                "use application/x-protobuf or application/json",
            )
            return
        as_json = content_type == _JSON_TYPE
        try:
            body = self._read_body()
        except _HTTPError as exc:
            self._reply_error(exc.status, exc.message, as_json=as_json)
            return
        with self.server.track_request():
            try:
                encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
                message = _parse_http_body(signal, _decompress(body, encoding), as_json)
            except _HTTPError as exc:
                # The body was read in full, so the connection can stay open.
                self._reply_error(exc.status, exc.message, as_json=as_json, close=False)
                return
            try:
                self.server.ingest(signal, message)
            except Exception:
                _logger.exception("OTLP receiver failed to store an OTLP/HTTP %s request", signal)
                self._reply_error(500, "internal receiver error", as_json=as_json, close=False)
                return
            self._reply(200, *_ACCEPTED[as_json])

    def _method_not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in _HTTP_PATHS:
            self._reply_error(404, f"unknown path {path!r}; OTLP/HTTP paths are {_PATH_LIST}")
            return
        self._reply_error(405, f"{self.command} not allowed; use POST", extra={"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _HTTPError(411, "Content-Length or chunked Transfer-Encoding required")
        try:
            length = int(length_header)
        except ValueError:
            raise _HTTPError(400, f"invalid Content-Length {length_header!r}") from None
        if length < 0:
            raise _HTTPError(400, f"invalid Content-Length {length_header!r}")
        if length > MAX_BODY_BYTES:
            raise _HTTPError(413, f"body of {length} bytes exceeds {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _HTTPError(400, "connection closed before the whole body arrived")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HTTPError(400, "malformed chunked body") from None
            if size == 0:
                # Skip optional trailers up to the terminating blank line.
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _HTTPError(413, f"body exceeds {MAX_BODY_BYTES} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _HTTPError(400, "connection closed before the whole body arrived")
            chunks.append(chunk)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _reply(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        *,
        close: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if close:
            # The request body may be unread; closing keeps the stream in sync.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def _reply_error(
        self,
        status: int,
        message: str,
        *,
        as_json: bool | None = None,
        close: bool = True,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.server.reject()
        # OTLP/HTTP error bodies are google.rpc.Status in the request's encoding.
        code = _RPC_INTERNAL if status >= 500 else _RPC_INVALID_ARGUMENT
        if as_json is None:
            payload, content_type = message.encode(), "text/plain; charset=utf-8"
        elif as_json:
            payload = json.dumps({"code": code, "message": message}).encode()
            content_type = _JSON_TYPE
        else:
            from google.rpc import status_pb2

            payload = status_pb2.Status(code=code, message=message).SerializeToString()
            content_type = _PROTOBUF_TYPE
        self._reply(status, payload, content_type, close=close, extra=extra)


class OTLPHTTPServer(http.server.ThreadingHTTPServer):
    """Serves OTLP/HTTP on ``address``; can close its keep-alive connections on stop.

    ``ingest(signal, message)`` stores each decoded request (an exception it raises is
    answered with 500); ``reject()`` is called once per refused request.
    """

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], ingest: Ingest, reject: Callable[[], None]
    ) -> None:
        self.ingest = ingest
        self.reject = reject
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._state = threading.Condition()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _OTLPHTTPHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds
        # without DNS; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._state:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._state:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr, e.g. when stop() cuts a connection.
        _logger.debug("OTLP/HTTP connection from %s failed", client_address, exc_info=True)

    def track_request(self) -> _InFlight:
        return _InFlight(self)

    def close_connections(self, grace: float) -> None:
        """Let requests in progress finish (up to ``grace`` seconds), then drop all."""
        with self._state:
            self._state.wait_for(lambda: self._in_flight == 0, timeout=grace)
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _InFlight:
    """Context manager counting a request in progress on an ``OTLPHTTPServer``."""

    def __init__(self, server: OTLPHTTPServer) -> None:
        self._server = server

    def __enter__(self) -> None:
        with self._server._state:
            self._server._in_flight += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._server._state:
            self._server._in_flight -= 1
            self._server._state.notify_all()
