"""Rich's Table and Text, imported when first used (issue 15: start-up).

`from agentfire.cli._lazyrich import Table, Text` gives names that behave as Rich's classes
(calling one builds a real Rich object; `Text.assemble`, `Table.grid`; `isinstance(x, Text)`), but
Rich (20-25 ms of a start) is imported only when one is really made: `status --json`, a piped
`kill` and the like never make one (their plain output is written directly, see
agentfire.cli._app.plain_stream), so they never import Rich.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


class _Lazy(type):
    _module: str

    def _real(cls) -> Any:
        return getattr(importlib.import_module(cls._module), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)

    def __instancecheck__(cls, obj: Any) -> bool:
        # nothing is a Rich Text before Rich is imported: no need to import it to say so
        mod = sys.modules.get(cls._module)
        return mod is not None and isinstance(obj, getattr(mod, cls.__name__))


class Text(metaclass=_Lazy):
    _module = "rich.text"


class Table(metaclass=_Lazy):
    _module = "rich.table"


__all__ = ["Table", "Text"]
