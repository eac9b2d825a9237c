"""The wrapt proxy a patch puts in place of a target: recognisable, picklable, copyable.

:func:`is_traced` tells our wrappers from anyone else's (someone else's wrapt wrapper
is wrapped like any function), which is how patching never double-wraps.

wrapt proxies refuse to be pickled or copied ("object proxy must define
__reduce_ex__()"), which would make tracing change behaviour: a bound method given
to a ProcessPoolExecutor or multiprocessing is pickled, an object holding one may be
deep-copied. So our wrappers pickle the way Python pickles functions and bound
methods, by reference: (owner, name) or (instance, name), looked up again on load
(traced there if that process is instrumented too), and copy like them: a function
is its own copy, a bound method's deep copy is bound to a deep copy of the instance.
"""

from __future__ import annotations

import copy
import importlib
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.instrumentors._machinery.specs import Wrapper


def _attribute(owner: Any, name: str) -> Any:
    """``owner.name``; a module owner is given by name (modules do not pickle)."""
    if isinstance(owner, str):
        owner = importlib.import_module(owner)
    return getattr(owner, name)


class _BoundTracedFunction(wrapt.BoundFunctionWrapper):
    """A traced method bound to an instance (or class): pickles like a bound method."""

    def __reduce_ex__(self, protocol: int) -> tuple[Any, tuple[Any, ...]]:
        parent = self._self_parent
        if self._self_instance is None:  # looked up on the class: the plain function
            return parent.__reduce_ex__(protocol)
        return getattr, (self._self_instance, parent._self_clstock_name)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        if self._self_instance is None:
            return self
        instance = copy.deepcopy(self._self_instance, memo)
        return getattr(instance, self._self_parent._self_clstock_name)


class TracedFunction(wrapt.FunctionWrapper):
    """The marker wrapper: an object of this class was put in place by this distro.

    ``group`` is the telemetry of the instrumentor that installed it (see
    ``patches.AttributePatch`` for why aliases need it).
    """

    __bound_function_wrapper__ = _BoundTracedFunction

    def __init__(self, wrapped: Any, wrapper: Wrapper, group: Any, owner: Any, name: str):
        super().__init__(wrapped, wrapper)
        self._self_clstock_group = group
        self._self_clstock_owner = owner.__name__ if isinstance(owner, ModuleType) else owner
        self._self_clstock_name = name

    def __reduce_ex__(self, protocol: int) -> tuple[Any, tuple[Any, ...]]:
        return _attribute, (self._self_clstock_owner, self._self_clstock_name)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        return self


def is_traced(obj: Any) -> bool:
    """Whether ``obj`` is a wrapper this distro installed (a wrapt proxy of our marker
    class: someone else's wrapt wrapper is not ours, and is wrapped like a function)."""
    return isinstance(obj, TracedFunction)
