"""``executus_nb.tool``: the ``@tool`` decorator that is also the way into the ``tool`` package.

``from executus_nb import tool`` must give the decorator, yet ``executus_nb.tool.ssrf``
and ``import executus_nb.tool.common as common`` must reach the subpackages; the
decorator object forwards unknown attributes to the package for that.
"""

from __future__ import annotations

import importlib
from typing import Any

from executus_nb.tool import decorator


class ToolDecorator:
    """Call it as ``@tool`` / ``@tool(...)``; read attributes of the ``executus_nb.tool`` package from it."""

    __doc__ = decorator.tool.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return decorator.tool(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        package = importlib.import_module("executus_nb.tool")
        try:
            return getattr(package, name)
        except AttributeError:
            try:
                return importlib.import_module(f"executus_nb.tool.{name}")
            except ModuleNotFoundError:
                raise AttributeError(f"executus_nb.tool has no attribute {name!r}") from None

    def __repr__(self) -> str:
        return "<executus_nb.tool decorator>"


tool = ToolDecorator()
