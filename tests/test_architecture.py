"""The package's import graph: no cycles, and the layers ``lint-imports`` enforces.

The graph is read from the source (every ``import`` statement, at module level or
inside functions, TYPE_CHECKING blocks included), so it needs no import-linter.
An edge goes to the module named; a package's ``__init__`` counts only when it is
named itself, not when one of its submodules is (Python runs it then, but it is
not a dependency the code states).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "svc_infra"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The svc_infra modules ``name`` (at ``path``) imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source() -> None:
    """The reader finds relative and function-level imports (the check could not
    pass by seeing nothing)."""
    edges = graph()
    assert "svc_infra.websocket.server._registry" in edges["svc_infra.websocket.server._rooms"]
    assert "svc_infra.websocket.layer_messages" in edges["svc_infra.websocket.manager"]
    # A function-level import: the root wires the Starlette integration in lazily.
    assert "svc_infra.websocket.integrations.starlette" in edges["svc_infra.websocket"]


def test_cycles_are_detected() -> None:
    """The cycle finder reports a circle it is given."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_svc_infra_modules() -> None:
    """No svc_infra module imports, directly or not, a module that imports it."""
    assert cycles(graph()) == []


def test_the_core_imports_no_integration_and_no_scale_out() -> None:
    """server/ imports only server/ and the shared modules."""
    allowed = (
        "svc_infra.websocket.server",
        "svc_infra.websocket.close_codes",
        "svc_infra.websocket.config",
        "svc_infra.websocket.exceptions",
        "svc_infra.websocket.groups",
        "svc_infra.websocket.layer_messages",
        "svc_infra.websocket.models",
        "svc_infra.websocket.wire",
    )
    for name, deps in graph().items():
        if name.startswith("svc_infra.websocket.server"):
            assert all(d.startswith(allowed) for d in deps), (name, deps)


@pytest.mark.e2e
def test_lint_imports_keeps_every_contract() -> None:
    """The import-linter contracts in pyproject.toml hold (as ``make lint`` checks)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


# --- other libraries' private internals stay in the compat modules ----------------------

#: Underscore names that are public API where they come from (namedtuple's methods).
PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_fields", "_make"})
#: Names channels_redis does not document as API, though they have no underscore.
NON_API = frozenset({"consistent_hash", "deserialize"})


def own_names() -> set[str]:
    """Names svc_infra defines: functions, classes, slots, module constants and
    their string values, attributes set on ``self`` or ``cls``, arguments."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"self", "cls"}
            ):
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                if isinstance(node.value.value, str):
                    names.add(node.value.value)  # _ACCEPTED = "_svc_infra_accepted"
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                names.update(e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant))
    return names


def foreign_internals(path: Path, own: set[str]) -> list[str]:
    """``line: name`` for each use of another library's private or non-API name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value if node.value.isidentifier() else None
        if name is None or name in PUBLIC_UNDERSCORE or name.startswith("__"):
            continue
        if (name.startswith("_") and name not in own) or name in NON_API:
            found.append(f"{node.lineno}: {name}")
    return found


def test_private_internals_of_other_libraries_stay_in_compat_modules() -> None:
    """Starlette's ``_send``, asyncio's ``_asyncio_future_blocking``, channels_redis'
    ``_group_key`` and ``consistent_hash`` ...: only ``_compat_<library>.py`` modules
    may use them, each pinned by a test, so an upstream change breaks one place."""
    own = own_names()
    outside = {
        str(path.relative_to(ROOT)): found
        for path in PACKAGE.rglob("*.py")
        if not path.name.startswith("_compat_") and (found := foreign_internals(path, own))
    }
    assert outside == {}


def test_the_compat_check_sees_a_private_attribute() -> None:
    """The check above is not vacuous: it finds what the compat modules hold."""
    own = own_names()
    starlette = PACKAGE / "websocket" / "integrations" / "_compat_starlette.py"
    assert any(item.endswith(": _send") for item in foreign_internals(starlette, own))
    asyncio_compat = PACKAGE / "websocket" / "server" / "_compat_asyncio.py"
    assert any(
        i.endswith("_asyncio_future_blocking") for i in foreign_internals(asyncio_compat, own)
    )
