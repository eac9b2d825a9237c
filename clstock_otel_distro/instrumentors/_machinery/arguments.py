"""Where a named argument sits in a call's ``(args, kwargs)``, found once per target.

wrapt hands a wrapper the call's ``args`` and ``kwargs`` as given. Binding them to the
signature on every call (``inspect.Signature.bind``) would cost more than all the rest
of the traced call; an :class:`ArgumentSlot` reads the signature once, when the target
is wrapped, so the per-call lookup is an index or a dict get.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentSlot:
    """Where one named argument of a callable sits in a call's ``(args, kwargs)``.

    ``skip_first`` drops ``self``/``cls`` from the signature (wrapt passes the instance
    separately). Positional, keyword and defaulted arguments are all found; a name the
    signature does not have is looked up in ``kwargs`` (it may arrive in ``**kwargs``).
    """

    __slots__ = ("default", "index", "keyword", "name")

    def __init__(self, function: Callable[..., Any], name: str, *, skip_first: bool = False):
        self.name = name
        self.index: int | None = None
        self.default: Any = None
        self.keyword = True
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):  # no signature (builtins): keyword lookup only
            return
        if skip_first and parameters and parameters[0].kind in _POSITIONAL:
            parameters = parameters[1:]
        position = 0
        for parameter in parameters:
            if parameter.kind in _POSITIONAL:
                if parameter.name == name:
                    self.index = position
                    self.keyword = parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
                    self._set_default(parameter)
                    return
                position += 1
            elif parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name == name:
                self._set_default(parameter)
                return

    def _set_default(self, parameter: inspect.Parameter) -> None:
        if parameter.default is not inspect.Parameter.empty:
            self.default = parameter.default

    def get(self, args: tuple, kwargs: dict) -> Any:
        """The argument's value in this call (its default when not passed)."""
        index = self.index
        if index is not None and index < len(args):
            return args[index]
        if self.keyword:
            return kwargs.get(self.name, self.default)
        return self.default

    def extractor(self) -> Callable[[Any, tuple, dict], Any]:
        """``get`` as a call extractor, ``(instance, args, kwargs) -> value``, with the
        slot's position read into it (one call per traced call instead of two)."""
        index, name, default = self.index, self.name, self.default
        if index is None:
            if self.keyword:
                return lambda instance, args, kwargs: kwargs.get(name, default)
            return lambda instance, args, kwargs: default
        if self.keyword:
            return lambda instance, args, kwargs: (
                args[index] if index < len(args) else kwargs.get(name, default))
        return lambda instance, args, kwargs: args[index] if index < len(args) else default

    def replace(self, args: tuple, kwargs: dict, value: Any) -> tuple[tuple, dict]:
        """New ``(args, kwargs)`` passing ``value`` for this argument; inputs untouched."""
        index = self.index
        if index is not None and index < len(args):
            return (*args[:index], value, *args[index + 1 :]), kwargs
        return args, {**kwargs, self.name: value}
