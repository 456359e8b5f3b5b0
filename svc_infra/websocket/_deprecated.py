"""Old import paths that keep working for a while, with a ``DeprecationWarning``.

Each public name has one home. A module that used to re-export names from
their home keeps answering for them through :func:`moved`, so that upgrading
does not break an import; the warning names the new path.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["moved"]


def moved(old: str, new: str, names: Iterable[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old``, whose ``names`` now live in ``new``.

    Args:
        old: The deprecated module (its ``__name__``).
        new: The module that is the names' home.
        names: The names ``old`` still answers for.

    Returns:
        The function to assign to ``old``'s ``__getattr__``: it warns and
        returns the name from ``new``, and raises ``AttributeError`` for others.
    """
    known = frozenset(names)

    def __getattr__(name: str) -> Any:  # noqa: N807 (a module __getattr__)
        if name not in known:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} moved: import it from {new} ; {old} goes in the next minor release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new), name)

    return __getattr__
