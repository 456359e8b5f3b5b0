"""Fail the docs build on a docstring cross-reference that points nowhere.

The docstrings name other objects with Sphinx roles (``:class:`~.server.ops.ManagerOps```,
``:meth:`drain```); mkdocstrings renders them as text, so a reference to a module
that was renamed or an object that was removed would go unnoticed. This reads the
package with griffe (nothing is imported) and resolves every such reference the
way Sphinx would: absolute, relative to the enclosing objects (a leading dot
climbs from the module's package), or a bare name of an enclosing scope.
References to other libraries (``asyncio.Task``, ``json.JSONDecodeError``) and
builtins are accepted without a look.

Used as a mkdocs hook (``hooks:`` in ``mkdocs.yml``: ``make docs`` fails), and on
its own: ``python scripts/check_xrefs.py`` prints what does not resolve.
"""

from __future__ import annotations

import builtins
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "svc_infra"
ROLE = re.compile(r":(?:class|mod|func|meth|exc|data|attr|obj):`~?([A-Za-z_.][\w.]*)`")
# Other libraries the docstrings may name: not looked up (their docs are theirs).
EXTERNAL = {
    "asyncio",
    "channels",
    "channels_redis",
    "collections",
    "daphne",
    "django",
    "fastapi",
    "json",
    "jwt",
    "os",
    "prometheus_client",
    "redis",
    "starlette",
    "typing",
    "uvicorn",
    "websockets",
}


def _objects(obj: Any) -> Iterator[Any]:
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _objects(member)


def _exists(package: Any, path: str) -> bool:
    if not path.startswith(PACKAGE + "."):
        return path == PACKAGE
    try:
        package[path[len(PACKAGE) + 1 :]]
    except Exception:  # KeyError, or an alias that cannot be followed
        return False
    return True


def _scopes(obj: Any) -> list[str]:
    """The paths a bare or relative name is looked up from, innermost first."""
    scopes = []
    current = obj
    while current is not None:
        scopes.append(current.path)
        current = current.parent
    return scopes


def resolves(package: Any, obj: Any, target: str) -> bool:
    head = target.lstrip(".").split(".")[0]
    if head in EXTERNAL or (hasattr(builtins, head) and "." not in target.lstrip(".")):
        return True
    if not target.startswith(".") and _exists(package, target):
        return True
    name = target.lstrip(".")
    return any(_exists(package, f"{scope}.{name}") for scope in _scopes(obj))


def broken_references(root: Path = ROOT) -> list[str]:
    """``file:line: target`` for each reference that does not resolve."""
    import griffe

    package = griffe.load(PACKAGE, search_paths=[str(root)], resolve_aliases=False)
    found = []
    for obj in _objects(package):
        docstring = obj.docstring
        if docstring is None:
            continue
        for match in ROLE.finditer(docstring.value):
            if not resolves(package, obj, match.group(1)):
                line = (docstring.lineno or 0) + docstring.value[: match.start()].count("\n")
                where = Path(str(obj.filepath)).relative_to(root)
                found.append(f"{where}:{line}: {match.group(0)}")
    return sorted(set(found))


def on_config(config: Any) -> Any:
    """mkdocs hook: stop the build on a broken reference."""
    broken = broken_references()
    if broken:
        from mkdocs.exceptions import PluginError

        raise PluginError(
            "docstring cross-references that do not resolve:\n  " + "\n  ".join(broken)
        )
    return config


if __name__ == "__main__":
    problems = broken_references()
    print("\n".join(problems) or "every docstring cross-reference resolves")
    sys.exit(1 if problems else 0)
