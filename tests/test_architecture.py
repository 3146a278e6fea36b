"""What each part may import (docs/architecture.md), checked by walking every import statement
of the package, function-level imports included: the layering is a contract, not a habit."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ttscale"

#: part -> the parts it may import (besides itself). A part is a top-level module or folder.
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "shipped": set(),
    "progress": set(),
    "grading": set(),
    "net": {"types", "errors"},
    "hf_loading": {"types", "errors"},
    "tasks": {"types", "grading"},
    "engines": {"types", "errors", "net", "hf_loading"},
    "verifiers": {"types", "errors", "engines", "net", "hf_loading"},
    "store": {"types"},
    "strategies": {"types", "errors", "engines", "tasks", "verifiers"},
    "config": {"strategies"},
    "session": {"types", "errors", "config", "strategies", "engines", "verifiers", "tasks",
                "grading", "shipped"},
    "runner": {"types", "config", "session", "store", "strategies", "progress"},
    "analysis": {"types", "config", "session", "store", "strategies", "grading", "verifiers",
                 "progress"},
    "optimal": {"types", "config", "session", "store", "strategies", "analysis", "verifiers"},
    "report": {"types", "session", "store", "analysis", "optimal", "tasks", "strategies"},
    "serve": {"types", "errors", "config", "session", "strategies", "engines", "verifiers",
              "tasks", "grading", "shipped", "net"},
    "testing": {"types", "errors", "serve", "engines", "net", "shipped"},
    "train": {"types", "engines", "verifiers", "tasks", "grading", "shipped"},
    "testbed": {"types", "engines", "verifiers", "tasks", "grading", "strategies", "session",
                "analysis", "train", "shipped"},
    "demo": {"analysis", "report"},
    "cli": {"ttscale", "config", "runner", "grading", "strategies", "analysis", "optimal",
            "report", "serve", "testbed", "train", "demo"},
    "__main__": {"cli"},
    "ttscale": {"session"},  # the package's own __init__: the public Session, lazily
}


def _part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "ttscale"


def imports() -> dict[str, dict[str, set[str]]]:
    """part -> imported part -> the files that import it."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC.parent).with_suffix("")
        me = _part(".".join(rel.parts).removesuffix(".__init__"))
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "ttscale":
                # `from ttscale import demo` imports the part demo; `__version__` the package
                names = [f"ttscale.{a.name}" if (SRC / a.name).exists() or
                         (SRC / f"{a.name}.py").exists() else "ttscale" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = []
            for name in names:
                if name == "ttscale" or name.startswith("ttscale."):
                    out[me][_part(name)].add(str(f.relative_to(SRC)))
    return out


def test_every_part_imports_only_what_the_architecture_allows():
    bad = []
    for part, deps in imports().items():
        assert part in ALLOWED, f"new part {part!r}: add it to docs/architecture.md and here"
        for dep, files in deps.items():
            if dep != part and dep not in ALLOWED[part]:
                bad.append(f"{part} -> {dep} ({', '.join(sorted(files))})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_strategies_never_import_the_offline_or_the_assembling_parts():
    deps = imports()["strategies"]
    assert not set(deps) & {"optimal", "analysis", "session", "runner", "serve", "cli",
                            "store", "config"}


def test_the_architecture_doc_names_every_part():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for part in ALLOWED:
        if part not in ("__main__", "ttscale"):
            assert f"`{part}" in doc, part
