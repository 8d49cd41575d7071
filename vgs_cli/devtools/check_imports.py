"""`python -m vgs_cli.devtools.check_imports [--max-lines N] [ROOT]`: enforce the import layering.

    cli  ->  serve | reproduce  ->  prepare | generate | train | metrics | official  ->  loading  ->  models / data / audio
                                                                   (config, errors, fsutil, checkpoint, dist: all)

`serve` (the web page + API) and `reproduce` (one paper row: official + generate + metrics) orchestrate like
`cli`: they may import the middle packages and below, not each other, and only `cli` may import them. The middle packages are siblings: none imports another (what two of them need lives below, in `loading`,
`data` or `audio`). `loading` turns checkpoints into models for all of them.

Every `import` in every file under vgs_cli (including imports inside functions, which are still
dependencies) is resolved to an absolute module name and checked against FORBIDDEN. Exit 1 with one line
per offender, 0 when clean. Import cycles (a module importing, directly or through others, a module
that imports it back) fail too. `--max-lines N` also fails on files longer than N lines.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "vgs_cli"
MIDDLE = ("prepare", "generate", "train", "metrics", "official")
UPPER = ("cli", "serve", "reproduce", *MIDDLE, "loading")
# layer of the importing file -> layers it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "models": frozenset({*UPPER, "data"}),  # models are pure nn.Modules
    "data": frozenset(UPPER),
    "audio": frozenset(UPPER),
    "loading": frozenset({"cli", "serve", "reproduce", *MIDDLE}),
    # no sideways imports between the middle packages
    **{name: frozenset({"cli", "serve", "reproduce", *(m for m in MIDDLE if m != name)}) for name in MIDDLE},
    # the orchestration layers above the middle packages: siblings, below cli
    "serve": frozenset({"cli", "reproduce"}),
    "reproduce": frozenset({"cli", "serve"}),
    # the shared foundation is imported by everyone, so it may only import itself
    "config": frozenset({*UPPER, "models", "data", "audio"}),
    "shared": frozenset({*UPPER, "models", "data", "audio"}),
}
SHARED_MODULES = frozenset({"errors", "fsutil", "checkpoint", "dist", "cache", "cpu", "__init__"})


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    layer: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.layer} must not import {self.imported}"


def layer_of(module: str) -> str | None:
    """`vgs_cli.models.gpt` -> "models"; `vgs_cli.errors` -> "shared"; non-vgs modules -> None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1 or parts[1] in SHARED_MODULES:
        return "shared"
    if parts[1] == "__main__":  # `python -m vgs_cli` is an entry point like the CLI
        return "cli"
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST, this_module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import; `from a import b` yields `a.b` too (b may be a module)."""
    out: list[tuple[int, str]] = []
    package = this_module if is_package else this_module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
    return out


def find_violations(root: Path) -> list[Violation]:
    root = Path(root)
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        layer = layer_of(mod)
        banned = FORBIDDEN.get(layer or "", frozenset())
        if not banned:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen: set[tuple[int, str]] = set()
        for line, target in imported_modules(tree, mod, path.name == "__init__.py"):
            target_layer = layer_of(target)
            # `from vgs_cli import errors` names the package itself; its members are checked as a.b
            if target_layer in banned and target != PACKAGE and (line, target_layer) not in seen:
                seen.add((line, target_layer))
                found.append(Violation(path, line, layer, target))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """vgs_cli module -> the vgs_cli modules it imports (anywhere in the file; packages by their __init__)."""
    root = Path(root)
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for mod, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[mod] = {t for _, t in imported_modules(tree, mod, path.name == "__init__.py") if t in paths and t != mod}
    return graph


def find_cycles(root: Path) -> list[list[str]]:
    """Import cycles: for every group of modules that import each other (transitively), one closed path
    `[a, b, ..., a]` through its first module. Tarjan's strongly connected components, iteratively."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return sorted(_closed_path(graph, group) for group in groups)


def _closed_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """Shortest path from the group's first module back to itself, inside the group (breadth first)."""
    first = min(group)
    previous: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(previous[path[-1]])
                    return [*reversed(path), first]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return [first]


def long_files(root: Path, max_lines: int) -> list[tuple[Path, int]]:
    """Files under `root` with more than `max_lines` lines, longest first."""
    counts = [(p, len(p.read_text(encoding="utf-8").splitlines())) for p in sorted(Path(root).rglob("*.py"))]
    return sorted(((p, n) for p, n in counts if n > max_lines), key=lambda item: -item[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--max-lines", type=int, default=0, help="also fail on files longer than this (0: off)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    bad = find_violations(root)
    for v in bad:
        print(v)
    cycles = find_cycles(root)
    for cycle in cycles:
        print(f"import cycle: {' -> '.join(cycle)}")
    long = long_files(root, args.max_lines) if args.max_lines > 0 else []
    for path, n in long:
        print(f"{path}: {n} lines (limit {args.max_lines})")
    if bad or cycles or long:
        print(f"{len(bad)} layering violation(s), {len(cycles)} import cycle(s), {len(long)} over-long file(s)",
              file=sys.stderr)
        return 1
    print(f"imports OK ({sum(1 for _ in root.rglob('*.py'))} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
