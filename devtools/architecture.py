"""The shape of the code base, measured: module sizes, import circles, layering, platform branches.

    python -m devtools.architecture [--root DIR] [--json]

Prints the largest library modules, every import circle (imports inside functions count; those under
``if TYPE_CHECKING:`` do not, they never run), imports that break the layering (model/ and formats/ import nothing
of the service; annotation_client/ only formats/; web/ nothing of the worker but its queue, worker.jobs; the
worker nothing of web/), and ``platform == "..."`` branches outside the platform registry. tests/test_architecture.py
holds the code base to it. ``--root`` measures another checkout (e.g. an older commit).
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("tests", "bench", "scripts", "devtools", "emulator", ".venv", ".lsvenv", "docs", "instance")  # not library code
SERVICE = ("app", "config", "storage", "jobs", "ml_backend", "web", "worker", "annotation_client", "pipeline",
           "pipeline_labelstudio", "api", "receivers", "dashboard", "observability", "plots")
REGISTRY = "annotation_client/__init__.py"
BRANCH = re.compile(r"""platform\s*(==|!=)\s*["'A-Z]|(==|!=)\s*["'](tagtog|labelstudio)["']|platform\s+in\s*\(""")


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every Python module of the checkout (tools included)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if rel.parts[0] in (".venv", ".lsvenv", ".git", "build", "dist") or rel.parts[0].startswith("."):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = f
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the checkout that ``name`` imports (anywhere but under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".") if package else []
                up = up[: len(up) - (node.level - 1)] if node.level > 1 else up
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def unresolved(root: Path, files: dict[str, Path]) -> list[str]:
    """Absolute imports (anywhere, lazy ones included) of a top-level name that neither the checkout nor the
    installed packages have: e.g. a module that moved, imported inside a function that no test ran."""
    import importlib.util  # noqa: PLC0415

    tops = {n.split(".")[0] for n in files}
    out, seen = [], {}
    for name, f in files.items():
        if _top(name) in ("tests", "bench"):
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for m in mods:
                top = m.split(".")[0]
                if top not in seen:
                    seen[top] = top in tops or top in sys.builtin_module_names or importlib.util.find_spec(top) is not None
                if not seen[top]:
                    out.append(f"{f.relative_to(root).as_posix()}:{node.lineno}: import {m}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def layering(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point the wrong way."""
    bad = []
    for src, dsts in sorted(graph.items()):
        top = _top(src)
        for dst in sorted(dsts):
            t = _top(dst)
            if top in ("model", "formats") and t != top:
                bad.append(f"{src} -> {dst} ({top}/ imports nothing of the service)")
            elif top == "annotation_client" and t not in ("annotation_client", "formats"):
                bad.append(f"{src} -> {dst} (annotation_client/ imports only formats/)")
            elif top in ("web", "app") and t == "worker" and dst != "worker.jobs" and dst != "worker":
                bad.append(f"{src} -> {dst} (the web side reaches the worker only through its queue)")
            elif top == "worker" and t in ("web", "app"):
                bad.append(f"{src} -> {dst} (the worker imports nothing of the web side)")
            elif top in ("storage", "config") and t in ("web", "worker", "app"):
                bad.append(f"{src} -> {dst} ({top} is below both processes)")
    return bad


def platform_branches(root: Path, files: dict[str, Path]) -> list[str]:
    out = []
    for name, f in files.items():
        rel = f.relative_to(root).as_posix()
        if _top(name) in ("tests", "bench", "emulator") or rel in (REGISTRY, "devtools/architecture.py"):
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if BRANCH.search(code):
                out.append(f"{rel}:{i}: {line.strip()}")
    return out


def measure(root: Path) -> dict[str, Any]:
    known = modules(root)
    library = {n: f for n, f in known.items() if _top(n) not in TOOLS}
    graph = {n: imports(n, f, known) for n, f in known.items()}
    sizes = sorted(((len(f.read_text(encoding="utf-8").splitlines()), f.relative_to(root).as_posix())
                    for f in library.values()), reverse=True)
    top_level = sorted(f.relative_to(root).as_posix() for n, f in library.items() if "." not in n
                       and f.name != "__init__.py")
    return {"largest": sizes[:8], "top_level_modules": top_level,
            "cycles": cycles({n: d for n, d in graph.items() if _top(n) not in ("tests", "bench")}),
            "layering": layering({n: d for n, d in graph.items() if _top(n) not in TOOLS}),
            "platform_branches": platform_branches(root, known),
            "unresolved": unresolved(root, known)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    m = measure(args.root.resolve())
    if args.json:
        sys.stdout.write(json.dumps(m, indent=2) + "\n")
        return 0
    w = sys.stdout.write
    w(f"largest library module: {m['largest'][0][1]} ({m['largest'][0][0]} lines)\n")
    for n, f in m["largest"][1:]:
        w(f"  then {f} ({n})\n")
    w(f"top-level modules: {len(m['top_level_modules'])} ({', '.join(m['top_level_modules'])})\n")
    for key, title in (("cycles", "import circles"), ("layering", "layering violations"),
                       ("unresolved", "imports of modules that do not exist"),
                       ("platform_branches", f"platform branches outside {REGISTRY}")):
        w(f"{title}: {len(m[key])}\n")
        for item in m[key]:
            w(f"  {' <-> '.join(item) if key == 'cycles' else item}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
