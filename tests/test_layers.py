"""Imports point down: no module imports from a layer above its own (read from the source, ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gensar"
# Lowest first; a module may import from its own layer and the ones below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "io", "errors", "runtime", "metrics", "train_utils", "locks", "ownership", "exports"),
    ("data",), ("embed",), ("ids",), ("model",), ("decode",), ("eval",), ("baselines",), ("hybrid",),
    ("serve",), ("pipeline", "refresh", "report", "defaults"), ("cli", "pipeline_cli", "__main__"),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}



def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None  # the gensar package itself: no layer


def _imports(path: Path) -> set[str]:
    """Every ``gensar.*`` module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gensar.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gensar."):
            found.add(node.module)
    return found


def upward_imports() -> set[tuple[str, str]]:
    out = set()
    for path in sorted(SRC.rglob("*.py")):
        me = _module_name(path)
        mine = _layer(me)
        for target in _imports(path):
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                out.add((me, target))
    return out


def test_every_module_is_in_a_layer():
    unknown = {_module_name(p) for p in SRC.rglob("*.py") if _layer(_module_name(p)) is None}
    assert unknown <= {"gensar"}, f"add these to LAYERS: {sorted(unknown - {'gensar'})}"


def test_imports_point_down():
    bad = upward_imports()
    assert not bad, "imports from a higher layer: " + ", ".join(f"{a} -> {b}" for a, b in sorted(bad))


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # The test itself must be able to fail: a data module importing the model is flagged.
    pkg = tmp_path / "gensar" / "data"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from gensar.model.tasks import Sample\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "gensar")
    assert upward_imports() == {("gensar.data.bad", "gensar.model.tasks")}


def test_no_module_over_500_lines():
    # One concept per module: a module past 500 lines holds several (issue 17); split it by concept.
    long = {_module_name(p): n for p in SRC.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, f"split these modules: {long}"


PACKAGES = ("data", "embed", "ids", "model", "decode", "eval", "baselines", "serve", "hybrid")


def test_public_api_is_declared_and_lazy():
    # Every subpackage names its public API in __all__; importing the packages costs nothing heavy,
    # each name then resolves to what its module defines, and no name is also a submodule's.
    import pkgutil
    import subprocess
    import sys

    code = f"""
import importlib, sys
pkgs = [importlib.import_module("gensar." + p) for p in {PACKAGES!r}]
assert not {{"torch", "pandas", "transformers"}} & set(sys.modules), "a package __init__ imports eagerly"
for pkg in pkgs:
    assert pkg.__all__, pkg.__name__
    for name in pkg.__all__:
        value = getattr(pkg, name)
        assert not isinstance(value, type(sys)), (pkg.__name__, name)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for pkg in PACKAGES:
        init = (SRC / pkg / "__init__.py").read_text(encoding="utf-8")
        exported = ast.literal_eval(init.split("__all__ = ", 1)[1].split("]", 1)[0] + "]")
        submodules = {m.name for m in pkgutil.iter_modules([str(SRC / pkg)])}
        assert not set(exported) & submodules, f"gensar.{pkg} exports a submodule's name"


def test_every_command_is_a_handler_in_a_cli_module():
    # One shape for every command: gensar.<package>.cli:cli_<name> (the run-level commands in
    # gensar.pipeline_cli), so the domain modules hold no argparse handling.
    import importlib

    from gensar.cli import build_parser

    _, handlers = build_parser()
    for command, handler in handlers.items():
        module, func = handler.split(":")
        assert module == "gensar.pipeline_cli" or (module.startswith("gensar.") and module.endswith(".cli")
                                                    and module.count(".") == 2), (command, handler)
        assert func.startswith("cli_") and callable(getattr(importlib.import_module(module), func)), handler
    defined_elsewhere = sorted(
        f"{_module_name(p)}:{node.name}" for p in SRC.rglob("*.py")
        if p.name != "cli.py" and p.stem != "pipeline_cli"
        for node in ast.parse(p.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("cli_")
    )
    assert not defined_elsewhere, f"command handlers outside a cli module: {defined_elsewhere}"
