"""The import graph of `training/`: no cycle between the services, the Celery tasks, the worker and
the jobs, neither module by module nor package by package. Every import counts, also one inside
a function (a cycle hidden in a function is still a cycle), and so do the registry's imports of
the kinds' modules (`training.jobs.kinds.run_kinds` imports every module of `training.jobs`).

Layers, top to bottom: tasks -> worker -> services -> jobs (the run kinds)."""

import ast
from pathlib import Path

import training

ROOT = Path(training.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the `training` modules it imports (ast, anywhere in the file)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    jobs = {m for m in modules if m.startswith("training.jobs.")}
    graph["training.jobs.kinds"] |= jobs - {"training.jobs.kinds"}
    return graph


def layer(module: str) -> str | None:
    for prefix in ("training.services", "training.jobs", "training.tasks", "training.worker"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_cycle_between_services_tasks_worker_and_jobs():
    graph = import_graph()
    layered = {m: {t for t in targets if layer(t)} for m, targets in graph.items() if layer(m)}
    assert cycles(layered) == []


def test_the_layers_import_downwards_only():
    graph = import_graph()
    edges = {(layer(m), layer(t)) for m, targets in graph.items() for t in targets}
    between = {(a, b) for a, b in edges if a and b and a != b}
    assert cycles({a: {b for x, b in between if x == a} for a, _ in between}) == []
    assert ("training.jobs", "training.services") not in between  # a job never calls a service


def test_the_graph_sees_imports_inside_functions():
    # training.tasks imports the worker at the top and the registry's kinds through it; the
    # walk must also see function-level imports, as the jobs' `run` has them
    graph = import_graph()
    assert "training.ml.sft" in graph["training.jobs.sft"]
    assert "training.jobs.sft" in graph["training.jobs.kinds"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
