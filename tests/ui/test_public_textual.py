"""The dashboard and its tests use Textual's public API only: a private name changes without notice."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Code that talks to Textual: it reaches no object's private names but its own.
UI_CODE = (ROOT / "blocktui" / "ui", ROOT / "tests" / "ui", ROOT / "tests" / "support")


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in UI_CODE:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_of_another_object_is_read() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}"
        for path, module in sources()
        for node in ast.walk(module)
        if isinstance(node, ast.Attribute)
        and is_private(node.attr)
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert not found


def textual_names(cls: type) -> set[str]:
    """Every private name the Textual classes ``cls`` inherits from define or set on themselves."""
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("textual"):
            names |= {name for name in vars(base) if is_private(name)}
            names |= set(re.findall(r"\bself\.(_[A-Za-z]\w*)", inspect.getsource(base)))
    return names


def test_no_subclass_uses_or_overrides_a_private_textual_name() -> None:
    found: list[str] = []
    for path, module in sources():
        if not path.is_relative_to(ROOT / "blocktui"):
            continue
        loaded = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(module):
            cls = getattr(loaded, node.name, None) if isinstance(node, ast.ClassDef) else None
            if not isinstance(node, ast.ClassDef) or not inspect.isclass(cls):
                continue
            ours = {
                sub.name for sub in ast.walk(node) if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef)
            } | {sub.attr for sub in ast.walk(node) if isinstance(sub, ast.Attribute)}
            found += [
                f"{path.relative_to(ROOT)} {node.name}.{name}" for name in sorted(ours & textual_names(cls))
            ]
    assert not found
