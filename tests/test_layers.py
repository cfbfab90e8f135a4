"""The layer contract: each package of ``src/ztnode`` imports only the layers below it.

docs/architecture.md draws the layers; :data:`ALLOWED` is the same table as data, and the two
must agree. Every import statement counts, wherever it stands (module level, inside a function,
under ``TYPE_CHECKING``): a lazy upward import is still an upward dependency. A failure names
the file, the line and the import that crossed a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ztnode

SRC = Path(ztnode.__file__).parent

# Layer -> the layers it may import (itself always allowed). Top-level modules are layers of
# their own. Keep in step with docs/architecture.md's table.
_BASE = frozenset({"errors", "_version", "fsutil", "budget", "_compiled"})
_CRYPTO = _BASE | {"crypto"}
# The C accelerator keeps its AES contexts on crypto's key objects, and wire, netstack and
# transport call it: it sits between crypto and the rest.
_ACCEL = _CRYPTO | {"accel"}
# The cursor buffer and the protocol constants depend on nothing of ours, so identities (whose
# binary form is read with the cursor) sit above them and below the rest of wire/.
_IDENTITY = _ACCEL | {"wire.base", "identity"}
_WIRE = _IDENTITY | {"wire"}
_CORE = _WIRE | {"core"}
# names/: sans-I/O DNS, mDNS/DNS-SD and LLMNR engines over dnspython; they know no socket.
_NAMES = _BASE | {"names"}
_BELOW_TRANSPORT = _CORE | {"netstack", "controller", "root", "names"}
_EVERYTHING = None  # the top: may import any layer

ALLOWED: dict[str, frozenset[str] | None] = {
    "_version": frozenset(),
    "errors": frozenset(),
    "fsutil": frozenset(),
    "budget": frozenset(),
    # Which of the hot path's modules load compiled: the standard library only (setup.py loads
    # it by path), imported first by the package.
    "_compiled": frozenset(),
    # The web console's static files: a package only so that importlib.resources finds them.
    "console": frozenset(),
    "accel": _ACCEL,
    "crypto": _CRYPTO,
    "wire.base": _BASE,
    "identity": _IDENTITY,
    "wire": _WIRE,
    "core": _CORE,
    "netstack": _CORE | {"netstack"},
    "names": _NAMES,
    "controller": _CORE | {"controller", "names"},
    "root": _WIRE | {"root"},
    "transport": _BELOW_TRANSPORT | {"transport"},
    "sockets": _BELOW_TRANSPORT | {"transport", "sockets"},
    "http": _BELOW_TRANSPORT | {"transport", "sockets", "http"},
    "testing": _BELOW_TRANSPORT | {"transport", "sockets", "http", "testing"},
    "demo": _EVERYTHING,
    "cli": _EVERYTHING,
    "__init__": _EVERYTHING,
    "__main__": _EVERYTHING,
}


def module_name(path: Path, root: Path) -> str:
    """``src/ztnode/core/node.py`` -> ``ztnode.core.node``; a package's ``__init__`` is the
    package itself."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


# Modules that form a layer apart from their package's (see ``_IDENTITY``).
SUBLAYERS = {"ztnode.wire.buffer": "wire.base", "ztnode.wire.constants": "wire.base"}


def layer_of(module: str) -> str:
    """The layer a dotted ``ztnode...`` name belongs to: its first component below ``ztnode``,
    or its entry in :data:`SUBLAYERS`."""
    if module in SUBLAYERS:
        return SUBLAYERS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(source: str, module: str, is_package: bool, root: Path) -> list[tuple[int, str]]:
    """Every ``ztnode`` module that ``source`` imports, with the line: ``from a import b`` names
    ``a.b`` when that is a module of ours, else ``a``; relative imports are resolved."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ztnode"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "ztnode":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub, root) else base))
    return sorted(set(found))


def _is_module(dotted: str, root: Path) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def violations(root: Path) -> list[str]:
    """Each import in the tree under ``root`` (a ``ztnode`` package directory) that the table
    forbids, as ``file:line: layer imports module``."""
    bad: list[str] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        if layer not in ALLOWED:
            bad.append(f"{path}: layer {layer!r} is not in the table (add it, and to the docs)")
            continue
        allowed = ALLOWED[layer]
        if allowed is None:
            continue
        source = path.read_text()
        for line, target in imports_of(source, module, path.name == "__init__.py", root):
            other = layer_of(target)
            if other != layer and other not in allowed:
                bad.append(f"{path}:{line}: {layer} imports {target} (layer {other})")
    return bad


def test_every_import_respects_the_layers() -> None:
    bad = violations(SRC)
    assert not bad, "imports that cross a layer upward:\n" + "\n".join(bad)


def test_every_layer_on_disk_is_in_the_table() -> None:
    layers = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    layers = {x for x in layers if not x.startswith((".", "__pycache__"))}
    known = set(ALLOWED)
    on_disk = {x for x in layers if (SRC / x).is_dir() or (SRC / f"{x}.py").is_file()}
    assert on_disk <= known, f"layers missing from the table: {sorted(on_disk - known)}"


@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        ("wire/codec.py", "from ztnode.core.node import Node\n", "wire imports ztnode.core.node"),
        ("crypto/x.py", "def f():\n    import ztnode.wire.packet\n", "crypto imports ztnode.wire"),
        ("core/x.py", "from ..sockets import aio\n", "core imports ztnode.sockets.aio"),
        ("netstack/x.py", "from ztnode import controller\n", "netstack imports ztnode.controller"),
        ("controller/x.py", "from ztnode.transport.httpapi import JsonApi\n", "controller imports"),
        ("wire/buffer.py", "from ztnode.identity import Identity\n", "wire.base imports"),
    ],
)
def test_the_checker_finds_an_upward_import(
    tmp_path: Path, where: str, text: str, expected: str
) -> None:
    root = tmp_path / "ztnode"
    for pkg in ("wire", "crypto", "core", "sockets", "netstack", "controller", "transport"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "sockets" / "aio.py").write_text("")
    (root / "core" / "node.py").write_text("")
    (root / "transport" / "httpapi.py").write_text("")
    (root / where).write_text(text)
    found = violations(root)
    assert len(found) == 1 and expected in found[0], found


def test_the_checker_allows_downward_and_sideways_imports(tmp_path: Path) -> None:
    root = tmp_path / "ztnode"
    for pkg in ("wire", "core", "crypto"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "core" / "node.py").write_text(
        "from ztnode.wire import packet\nfrom . import peer\nfrom ztnode.errors import X\n"
        "from ..crypto import keys\nimport ztnode.core.peer\n"
    )
    assert violations(root) == []
