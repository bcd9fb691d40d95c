"""The layers of docs/architecture.md, read from the source: estimators/ <- benchmarks/ <- reports/
<- estbench/, no import upwards, no import cycle between modules, no file over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("estimators", "benchmarks", "reports", "estbench")
#: what each layer may import of the project's packages (a layer imports the ones below it)
ALLOWED = {"estimators": {"estimators"}, "benchmarks": {"estimators", "benchmarks"},
           "reports": {"benchmarks", "reports"}, "estbench": set(PACKAGES)}
#: the report imports no model code: from benchmarks only the torch-free modules
REPORT_MAY_USE = {"benchmarks.schema", "benchmarks.results_file"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(module of the project it imports, whether at module level) for each import in ``path``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    checking = {id(n) for s in tree.body if isinstance(s, ast.If) and "TYPE_CHECKING" in ast.unparse(s.test)
                for n in ast.walk(s)}  # imports for annotations only
    top = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try))
                                        for n in ast.walk(s) if isinstance(n, (ast.Import, ast.ImportFrom))}
    top -= checking
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        guarded = isinstance(node, ast.ImportFrom) and node.module == "typing"
        for t in targets:
            if t.split(".")[0] in PACKAGES and not guarded:
                while t not in known and "." in t:
                    t = t.rpartition(".")[0]
                found.append((t, id(node) in top))
    return found


def test_no_import_reaches_a_layer_above():
    known = modules()
    bad = []
    for name, path in known.items():
        layer = name.split(".")[0]
        for target, _ in imports(name, path, known):
            if target.split(".")[0] not in ALLOWED[layer]:
                bad.append(f"{name} imports {target}")
            elif layer == "reports" and target.startswith("benchmarks") and target not in REPORT_MAY_USE \
                    and target != "benchmarks":
                bad.append(f"{name} imports {target} (the report reads files; no model code)")
    assert not bad, bad


def test_no_import_cycle_at_module_level():
    """A cycle of module-level imports is a design fault (a module half-initialized when the other
    runs); the graph's strongly connected components are single modules."""
    known = modules()
    graph = {n: {t for t, top in imports(n, p, known) if top and t != n and not n.startswith(t + ".")}
             for n, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_file_over_400_lines(pkg):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
