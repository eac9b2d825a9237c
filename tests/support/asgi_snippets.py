"""Source run in subprocesses by the ASGI tests (``python -c``): one in-process request."""

from __future__ import annotations

__all__ = ["HEALTH_REQUEST"]

# Defines ``scope`` (GET /health), ``receive`` and ``send`` for ``app(scope, receive, send)``.
HEALTH_REQUEST = (
    "scope = {'type': 'http', 'method': 'GET', 'path': '/health', 'query_string': b'',\n"
    "         'headers': [(b'host', b'x')], 'scheme': 'http', 'server': ('x', 80)}\n"
    "async def receive():\n"
    "    return {'type': 'http.request', 'body': b''}\n"
    "async def send(message):\n"
    "    pass\n"
)
