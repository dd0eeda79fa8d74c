"""The package's imports follow the layer diagram of docs/architecture.md: arrows only
point down, ``raft/`` imports nothing of ours, ``net/`` knows nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import raftchat

PACKAGE_ROOT = Path(raftchat.__file__).parent

FLOORS: dict[str, int] = {
    "raftchat.cli": 5,
    "raftchat.__main__": 5,
    "raftchat.frontends": 4,
    "raftchat.tui": 4,
    "raftchat.bench": 4,
    "raftchat.node": 3,
    "raftchat.settings": 3,
    "raftchat.chat": 2,
    "raftchat.storage": 2,
    "raftchat.witness": 2,
    "raftchat.net": 1,
    "raftchat.raft": 0,
}
"""Each room and its floor; a module may import from its own floor or below."""

LEAVES = {"raftchat", "raftchat.limits"}
"""Modules that import nothing of ours: every floor but ``raft`` may use them."""


def room_of(module: str) -> str:
    for room in sorted(FLOORS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    if module in LEAVES:
        return module
    raise AssertionError(f"{module} belongs to no room of the layer diagram")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every ``raftchat`` module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from raftchat import chat`` imports the module raftchat.chat.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "raftchat" or name.startswith("raftchat.")}


def is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split(".")[1:])
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def layer_problems(root: Path) -> list[str]:
    """Every import in the package at ``root`` that breaks the layer rules."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        source_room = room_of(source)
        for target in sorted(imports_of(path, root)):
            if not is_module(target, root):
                continue  # a name imported from a module, not a module
            target_room = room_of(target)
            if target_room == source_room:
                continue
            if source_room == "raftchat.raft":
                problems.append(f"{source} imports {target}: raft/ imports nothing of ours")
            elif source_room == "raftchat.net" and target_room not in LEAVES:
                problems.append(f"{source} imports {target}: net/ knows only bytes and peer ids")
            elif target_room not in LEAVES and (
                source_room in LEAVES or FLOORS[target_room] > FLOORS[source_room]
            ):
                problems.append(f"{source} imports {target}, which is above it")
    return problems


def test_every_import_points_down_the_layers() -> None:
    problems = layer_problems(PACKAGE_ROOT)
    assert not problems, "\n".join(problems)


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "raftchat"
    for module in (
        "__init__",
        "limits",
        "raft/__init__",
        "raft/core",
        "net/__init__",
        "node/__init__",
        "node/runtime",
    ):
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{module}.py").write_text("")
    (root / "raft" / "core.py").write_text("from raftchat.node import runtime\n")
    (root / "net" / "__init__.py").write_text("from raftchat.raft import core\n")
    (root / "node" / "runtime.py").write_text(
        "from raftchat import limits\nfrom ..raft import core\n"
    )
    problems = layer_problems(root)
    assert "raftchat.raft.core imports raftchat.node: raft/ imports nothing of ours" in problems
    assert "raftchat.net imports raftchat.raft: net/ knows only bytes and peer ids" in problems
    assert not [problem for problem in problems if problem.startswith("raftchat.node")]
