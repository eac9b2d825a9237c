"""Point yfinance at a Yahoo-compatible replay service instead of Yahoo Finance.

When ``CLSTOCK_YAHOO_URL`` is set (e.g. ``http://127.0.0.1:8001``, where
``app/market_replay.py`` runs), ``configure_yfinance()`` returns a curl_cffi session
that sends every ``*.yahoo.com`` request there, path and query unchanged, so the real
yfinance code fetches and parses replayed data. Unset or empty: it returns ``None``
and yfinance talks to Yahoo as usual.

    yf.Ticker("7203.T", session=configure_yfinance()).history(period="1y")

Pass the session to ``yf.download(..., session=...)`` too: ``download`` installs its
``session`` argument (or a fresh default one) as yfinance's process-wide session.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
import threading
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from curl_cffi import CurlHttpVersion
from curl_cffi import requests as curl_requests

__all__ = [
    "CACHE_DIR_ENV",
    "YAHOO_URL_ENV",
    "YahooReplaySession",
    "configure_yfinance",
    "is_yahoo_host",
]

YAHOO_URL_ENV = "CLSTOCK_YAHOO_URL"
CACHE_DIR_ENV = "CLSTOCK_YFINANCE_CACHE_DIR"
_YAHOO_COOKIE_DOMAIN = ".yahoo.com"

_lock = threading.Lock()
_sessions: dict[str, YahooReplaySession] = {}
_cache_dir: str | None = None


def is_yahoo_host(host: str | None) -> bool:
    """True for ``yahoo.com`` and its subdomains (query1.finance.yahoo.com, fc.yahoo.com...)."""
    host = (host or "").lower().rstrip(".")
    return host == "yahoo.com" or host.endswith(".yahoo.com")


class YahooReplaySession(curl_requests.Session):
    """A curl_cffi session that sends Yahoo requests to a replay base URL."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        base = urlsplit(base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(f"Not an http(s) base URL for the Yahoo replay: {base_url!r}")
        self.replay_url = base_url  # not "base_url": curl_cffi uses that name itself
        self._base: SplitResult = base
        # Same client fingerprint as yfinance's own default session...
        kwargs.setdefault("impersonate", "chrome")
        if base.scheme == "http":
            # ...but no HTTP/2: in cleartext, curl would ask for an h2c upgrade on every
            # request, which uvicorn refuses with a logged warning each time.
            kwargs.setdefault("http_version", CurlHttpVersion.V1_1)
        super().__init__(**kwargs)

    def rewrite_url(self, url: Any) -> Any:
        """``url`` with a Yahoo scheme and host replaced by the replay's; others unchanged."""
        if not isinstance(url, str):
            return url
        parts = urlsplit(url)
        if not is_yahoo_host(parts.hostname):
            return url
        path = self._base.path.rstrip("/") + (parts.path or "/")
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        """Rewrite ``url``, then send it through ``curl_cffi.requests.Session.request``."""
        # get()/post() and yfinance all land here; delegating to the base class keeps
        # whatever wraps curl_cffi's Session.request (e.g. a tracer) in the call path.
        target = self.rewrite_url(url)
        response = super().request(method, target, *args, **kwargs)
        if target != url and response.cookies and _cache_dir is not None:
            self._file_replay_cookies_under_yahoo()
        return response

    def _file_replay_cookies_under_yahoo(self) -> None:
        # yfinance keeps Yahoo's A3 cookie in its sqlite cookie cache, but only a cookie
        # the jar holds under a yahoo domain; lacking one, it fetches fc.yahoo.com again
        # before every single request. The replay's cookie is filed under the replay's
        # host, so file a copy under .yahoo.com, where Yahoo's own would be: yfinance
        # then fetches the cookie once, as it does with Yahoo. curl never sends the copy
        # to the replay. Only once configure_yfinance() has moved yfinance's caches: the
        # replay's cookie must never reach the user's real cache. Only the replay's
        # cookie endpoint sets cookies, and yfinance calls it under its own cookie lock,
        # so no other thread edits the jar meanwhile.
        jar = self.cookies.jar
        for cookie in list(jar):
            if cookie.domain == self._base.hostname:
                twin = copy.copy(cookie)
                twin.domain, twin.domain_specified, twin.domain_initial_dot = (
                    _YAHOO_COOKIE_DOMAIN, True, True)
                jar.set_cookie(twin)


def configure_yfinance() -> curl_requests.Session | None:
    """The replay session for ``CLSTOCK_YAHOO_URL``, or ``None`` to use Yahoo itself.

    The session is created once per base URL and shared by all threads (curl_cffi
    gives each thread its own curl handle), so calling this per request is cheap.
    """
    base_url = os.environ.get(YAHOO_URL_ENV, "").strip()
    if not base_url:
        return None
    session = _sessions.get(base_url)  # lock-free fast path: dict reads are atomic
    if session is not None:
        return session
    with _lock:
        session = _sessions.get(base_url)
        if session is None:
            _isolate_yfinance_caches()
            session = _sessions[base_url] = YahooReplaySession(base_url)
    return session


def _isolate_yfinance_caches() -> None:
    # yfinance persists ticker->timezone and Yahoo's cookie in sqlite files under the
    # user cache dir, shared by every process of the user. State left there by runs
    # against real Yahoo (or another replay) would skip requests the replay must see,
    # so replay runs get their own directory. Call with _lock held, before yfinance's
    # first request: yfinance opens those databases lazily and keeps them open.
    global _cache_dir
    if _cache_dir is not None:
        return
    import yfinance as yf
    from yfinance import cache

    cache_dir = os.environ.get(CACHE_DIR_ENV, "").strip()
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    else:
        cache_dir = tempfile.mkdtemp(prefix="clstock-yfinance-")
        atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    yf.set_tz_cache_location(cache_dir)  # despite its name: tz, cookie and ISIN caches
    # set_tz_cache_location() closes the databases already opened, but the cache objects
    # holding them would reopen the same files: drop those objects, if yfinance was used
    # already, so that they are created anew in cache_dir.
    for manager_name, attribute in (("_TzCacheManager", "_tz_cache"),
                                    ("_CookieCacheManager", "_Cookie_cache"),
                                    ("_ISINCacheManager", "_isin_cache")):
        manager = getattr(cache, manager_name, None)
        if getattr(manager, attribute, None) is not None:
            setattr(manager, attribute, None)
    _cache_dir = cache_dir
