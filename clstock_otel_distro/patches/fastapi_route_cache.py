"""Remember the route the FastAPI instrumentation finds for each request path.

Upstream's FastAPI instrumentation names the server span after the route template
(``GET /api/v1/predict/{symbol}``). It finds the template before the application
routes the request, by flattening the app's route list (one wrapper object per
route with FastAPI >= 0.137) and matching each route against the request, on every
request: a large share of what the distro adds to a small request such as ClStock's
``/health`` (bench/README.md, "What the profiles say"). For routes that match
on the path and method alone (starlette's ``Route``, ``Mount`` and
``WebSocketRoute``, FastAPI's subclasses of them), the answer depends only on the
request's type, method, root path and path, so it is remembered per app, up to
:data:`MAX_PATHS` of them (then forgotten and learned again: paths with parameters
are unbounded), and forgotten whenever routes are added.

An app with a ``Host`` route or a route class of its own (which may match on
anything, headers included) is not cached: every request is looked up as upstream does.
``OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE=false`` turns the cache off.
"""

from __future__ import annotations

import inspect
import logging
import operator
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["MAX_PATHS", "PATCH", "patch"]

_logger = logging.getLogger(__name__)

_MODULE = "opentelemetry.instrumentation.fastapi"
_FUNCTION = "_get_route_details"
# Distinct (type, method, root path, path) remembered per app; ~200 bytes each.
MAX_PATHS = 2048

_UNKNOWN: Any = object()  # not looked up yet (None is a valid answer: no route)


class _AppRoutes:
    """What is remembered for one app, valid while its routes stay the same."""

    __slots__ = ("cacheable", "names", "routers", "version")

    def __init__(self, routers: tuple[Any, ...], version: tuple[int, ...],
                 cacheable: bool) -> None:
        self.routers = routers
        self.version = version
        self.cacheable = cacheable
        self.names: dict[tuple[Any, ...], str | None] = {}


_apps: weakref.WeakKeyDictionary[Any, _AppRoutes] = weakref.WeakKeyDictionary()


def _shape(module: ModuleType) -> str | None:
    lookup = getattr(module, _FUNCTION, None)
    if not callable(lookup):
        return f"{_FUNCTION} is missing"
    try:
        parameters = list(inspect.signature(lookup).parameters)
    except (TypeError, ValueError):
        return f"{_FUNCTION} has no signature"
    if parameters[:1] != ["scope"]:
        return f"{_FUNCTION}{tuple(parameters)} no longer takes the ASGI scope first"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``module._get_route_details`` (the FastAPI instrumentation's module)."""
    original = getattr(module, _FUNCTION)
    flatten = getattr(module, "_flatten_routes", None)
    wrapt.wrap_function_wrapper(module, _FUNCTION, _cached(flatten))

    def undo() -> None:
        setattr(module, _FUNCTION, original)
        _apps.clear()

    return undo


PATCH = UpstreamPatch(
    name="fastapi-route-cache", distribution="opentelemetry-instrumentation-fastapi",
    versions=">=0.66b0,<0.67",
    module=_MODULE, symbol=_FUNCTION, purpose="FastAPI route lookups remembered per path",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE,
)


def _cached(flatten: Callable[[Any], Iterable[Any]] | None) -> Callable[..., Any]:
    def route_details(wrapped: Callable[..., Any], instance: Any, args: tuple,
                      kwargs: dict) -> Any:
        try:
            scope = args[0] if args else kwargs["scope"]
            app = scope["app"]
            key = (scope["type"], scope.get("method"), scope.get("root_path", ""),
                   scope["path"])
            known = _apps.get(app)
            if known is None or known.version != _routes_version(app, known.routers):
                routers = _routers(app)
                known = _apps[app] = _AppRoutes(routers, _routes_version(app, routers),
                                                _cacheable(app, flatten))
        except Exception:  # not a scope or an app this understands: upstream's way
            return wrapped(*args, **kwargs)
        if not known.cacheable:
            return wrapped(*args, **kwargs)
        names = known.names
        route = names.get(key, _UNKNOWN)
        if route is not _UNKNOWN:
            return route
        route = wrapped(*args, **kwargs)
        if len(names) >= MAX_PATHS:
            names.clear()
        names[key] = route
        return route

    return route_details


def _routes_version(app: Any, routers: tuple[Any, ...]) -> tuple[int, ...]:
    """Changes when a route is added to the app, or (FastAPI >= 0.137) to an included router.

    The app's route count, then each router's own ``_routes_version`` (FastAPI counts
    up each router's when a route or router is added to it; its ``_get_routes_version``
    sums them, walking the routes on every call): one attribute read per router.
    """
    return (len(app.router.routes), *map(_VERSION, routers))


_VERSION = operator.attrgetter("_routes_version")


def _routers(app: Any) -> tuple[Any, ...]:
    """The app's router and the routers included in it, at any depth, each once
    (FastAPI >= 0.137: ``include_router`` keeps them as ``_IncludedRouter`` routes);
    none before, or in a Starlette app."""
    found: dict[int, Any] = {}
    pending = [app.router]
    while pending:
        router = pending.pop()
        if id(router) in found or not isinstance(getattr(router, "_routes_version", None), int):
            continue
        found[id(router)] = router
        for route in router.routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                pending.append(included)
    return tuple(found.values())


def _cacheable(app: Any, flatten: Callable[[Any], Iterable[Any]] | None) -> bool:
    """Whether every route the lookup matches is one of the path-and-method matchers."""
    allowed = _path_route_types()
    routes = flatten(app.routes) if flatten is not None else app.routes
    # FastAPI >= 0.137 yields RouteContext wrappers: judge the route they wrap. Exact
    # types: a subclass may match on anything.
    return all(type(getattr(entry, "original_route", entry)) in allowed for entry in routes)


def _path_route_types() -> frozenset[type]:
    from starlette.routing import Mount, Route, WebSocketRoute

    types: set[type] = {Route, Mount, WebSocketRoute}
    try:
        from fastapi.routing import APIRoute, APIWebSocketRoute
    except ImportError:  # a Starlette app
        pass
    else:
        types.update((APIRoute, APIWebSocketRoute))
    return frozenset(types)
