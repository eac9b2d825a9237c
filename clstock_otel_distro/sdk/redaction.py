"""Scrub credentials out of every span before it is queued for export.

The HTTP instrumentations record the URLs ClStock serves and calls: ``url.full``
(``http.url`` with the old conventions) on client spans, ``url.query``
(``http.target``) on server spans. Upstream scrubs only part of them: the requests
and ASGI instrumentations redact user:password and the values of four query
parameters (``AWSAccessKeyId``, ``Signature``, ``sig``, ``X-Goog-Signature``) in
full URLs, and nothing at all in a server span's ``url.query``. An ``api_key`` or a
``token`` in a query string is exported as sent.

:class:`RedactingBatchSpanProcessor` is the BatchSpanProcessor the configurator
builds for every span exporter. When a span ends, before it is queued, it applies
the HTTP semantic conventions' redaction, with a longer list of parameters, to every
span, whichever instrumentation made it:

- ``url.full`` / ``http.url``: ``https://user:pw@host/`` becomes
  ``https://REDACTED:REDACTED@host/``;
- ``url.full`` / ``http.url`` / ``url.query`` / ``http.target``: the value of each
  sensitive query parameter (:data:`SENSITIVE_QUERY_PARAMETERS`, matched
  case-insensitively) becomes ``REDACTED``, its name kept:
  ``/quote?symbol=7203&api_key=REDACTED``;
- the same credentials and query values when they appear in an exception event's
  message or stack trace or in the span's status description (an HTTP client error
  quotes the URL it failed on).

Everything else in the URL is left byte for byte as recorded. The common case costs
a few dictionary lookups per span; a span is copied only when something was
redacted in it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_TARGET, HTTP_URL
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_QUERY
from opentelemetry.trace import Status

__all__ = [
    "REDACTED",
    "SENSITIVE_QUERY_PARAMETERS",
    "RedactingBatchSpanProcessor",
    "redact_query",
    "redact_span",
    "redact_text",
    "redact_url",
]

_logger = logging.getLogger(__name__)

REDACTED = "REDACTED"

SENSITIVE_QUERY_PARAMETERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        # The HTTP semantic conventions' list, current and as upstream still has it...
        "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "sig",
        "X-Goog-Signature", "AWSAccessKeyId", "Signature",
        # ...API keys, bearer and session tokens, passwords (Yahoo's crumb is tied to
        # the session cookie: enough to replay requests as that session).
        "api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token",
        "id_token", "auth", "auth_token", "authorization", "jwt", "crumb", "session",
        "sessionid", "session_id", "password", "passwd", "pwd", "secret", "client_secret",
        "credential", "credentials",
    )
)
"""Query parameters whose values are redacted, matched case-insensitively."""

_NAMES = "|".join(sorted(map(re.escape, SENSITIVE_QUERY_PARAMETERS), key=len, reverse=True))
# A sensitive parameter inside free text: the value runs to the next separator.
_IN_TEXT = re.compile(
    r"(?P<name>[?&;](?:" + _NAMES + r"))=(?!REDACTED\b)[^&;#\s'\"<>)\]]+", re.IGNORECASE)
# What a URL or query needs to contain for the exact (slower) parse to be worth it: a
# sensitive name followed by "=", an escape (the name may be encoded) or userinfo.
_SUSPECT = re.compile(r"(?:^|[?&;#])(?:" + _NAMES + r")=|%|@", re.IGNORECASE)


# Parameters are separated by "&" or, as many servers also accept, ";": a secret after
# a ";" (``?q=1;api_key=X``) is a parameter of its own.
_SEPARATORS = re.compile(r"([&;])")


def redact_query(query: str) -> str:
    """``query`` (``a=1&b=2`` or ``a=1;b=2``) with each sensitive parameter's value
    replaced by REDACTED; separators and everything else kept as they were."""
    if not _SUSPECT.search(query):
        return query
    parts = _SEPARATORS.split(query)  # parameters at even indexes, separators between
    changed = False
    for index in range(0, len(parts), 2):
        name, sep, value = parts[index].partition("=")
        if sep and value != REDACTED and unquote_plus(name).strip().lower() in \
                SENSITIVE_QUERY_PARAMETERS:
            parts[index] = f"{name}={REDACTED}"
            changed = True
    return "".join(parts) if changed else query


def _redact_userinfo(head: str) -> str:
    scheme_end = head.find("://")
    if scheme_end < 0:
        return head
    authority_start = scheme_end + 3
    authority_end = head.find("/", authority_start)
    authority = head[authority_start:] if authority_end < 0 else \
        head[authority_start:authority_end]
    at = authority.rfind("@")
    if at < 0 or authority[:at] == f"{REDACTED}:{REDACTED}":
        return head
    rest = "" if authority_end < 0 else head[authority_end:]
    return f"{head[:authority_start]}{REDACTED}:{REDACTED}@{authority[at + 1:]}{rest}"


def redact_url(url: str) -> str:
    """``url`` (absolute, or ``path?query``) without credentials or sensitive query values."""
    if not _SUSPECT.search(url):
        return url
    base, hash_sign, fragment = url.partition("#")
    head, question_mark, query = base.partition("?")
    # A fragment is not sent, but OAuth's implicit flow puts its access_token there.
    redacted = (_redact_userinfo(head) + question_mark
                + (redact_query(query) if question_mark else "")
                + hash_sign + redact_query(fragment))
    return redacted if redacted != url else url


# user:password@ in a URL inside free text.
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)"
                               r"(?!REDACTED:REDACTED@)[^/\s@'\"<>]+@")


def redact_text(text: str) -> str:
    """Free text (an error message, a stack trace) with URL credentials and sensitive
    query values redacted."""
    if "=" in text:
        text = _IN_TEXT.sub(lambda match: f"{match.group('name')}={REDACTED}", text)
    if "@" in text:
        text = _USERINFO_IN_TEXT.sub(
            lambda match: f"{match.group('scheme')}{REDACTED}:{REDACTED}@", text)
    return text


_ATTRIBUTE_REDACTORS: dict[str, Callable[[str], str]] = {
    URL_FULL: redact_url,
    HTTP_URL: redact_url,
    URL_QUERY: redact_query,
    HTTP_TARGET: redact_url,
}
_EVENT_TEXT_ATTRIBUTES = (EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE)


def _redacted_attributes(
    attributes: Mapping[str, Any] | None,
    redactors: Mapping[str, Callable[[str], str]],
) -> dict[str, Any] | None:
    """The changed values, or None when nothing needed redacting."""
    if not attributes:
        return None
    changes: dict[str, Any] | None = None
    # One pass over the keys: looking up absent keys in the SDK's mapping is slow.
    for key in redactors.keys() & attributes.keys():
        redact = redactors[key]
        value = attributes[key]
        if isinstance(value, str):
            redacted = redact(value)
            if redacted != value:
                changes = changes or {}
                changes[key] = redacted
    return changes


def _bounded(original: Mapping[str, Any], changes: Mapping[str, Any], dropped: int
             ) -> BoundedAttributes:
    bounded = BoundedAttributes(attributes={**original, **changes}, immutable=True)
    # Keep the count of attributes the limits dropped, which the exporter reports.
    bounded.dropped = dropped
    return bounded


_TEXT_REDACTORS = dict.fromkeys(_EVENT_TEXT_ATTRIBUTES, redact_text)


def _redacted_events(span: ReadableSpan) -> BoundedList | None:
    events = span.events
    if not events:
        return None
    changed = False
    redacted = BoundedList(maxlen=None)
    for event in events:
        changes = _redacted_attributes(event.attributes, _TEXT_REDACTORS)
        if changes:
            changed = True
            attributes = _bounded(event.attributes or {}, changes, event.dropped_attributes)
            event = Event(event.name, attributes, event.timestamp)
        redacted.append(event)
    redacted.dropped = span.dropped_events
    return redacted if changed else None


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when it holds nothing to redact, else a redacted copy."""
    attributes = _redacted_attributes(span.attributes, _ATTRIBUTE_REDACTORS)
    events = _redacted_events(span)
    description = span.status.description
    redacted_description = redact_text(description) if description else description
    status = None
    if redacted_description != description:
        status = Status(span.status.status_code, redacted_description)
    if attributes is None and events is None and status is None:
        return span
    # A new ReadableSpan through its public constructor (the original is left
    # untouched). The dropped counts travel in the bounded containers, as the SDK's
    # properties read them there.
    links = BoundedList(maxlen=None)
    links.extend(span.links)
    links.dropped = span.dropped_links
    if events is None:
        events = BoundedList(maxlen=None)
        events.extend(span.events)
        events.dropped = span.dropped_events
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_bounded(span.attributes, attributes or {}, span.dropped_attributes),
        events=events,
        links=links,
        kind=span.kind,
        status=span.status if status is None else status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that scrubs credentials from each span before queueing it."""

    def on_end(self, span: ReadableSpan) -> None:
        try:
            span = redact_span(span)
        except Exception:  # a redaction bug must not reach ClStock, nor leak the span
            _logger.debug("Could not redact span %r; it is not exported", span.name,
                          exc_info=True)
            return
        super().on_end(span)
