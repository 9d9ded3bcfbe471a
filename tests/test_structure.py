"""The import layering the data flow implies: the detector side never loads the engine, no
module imports itself in a circle, and nothing outside tests/ imports tests/."""
import ast
import glob
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["zip_d2.text", "zip_d2.modeling", "zip_d2.models",
                                    "zip_d2.evaluation", "zip_d2.engine"])
def test_detector_side_modules_do_not_import_the_pseudo_label_engine(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.startswith('zip_d2.pseudo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def _imported_modules(path, package):
    """Absolute names of every module a source file imports (lazy imports inside functions
    included), with relative imports resolved against ``package``."""
    import ast

    names = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    return names


def test_no_source_file_outside_the_engine_imports_it_even_lazily():
    import glob
    import os

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zip_d2")
    offenders = []
    for sub in ("modeling", "evaluation", "engine", "data"):
        for path in glob.glob(os.path.join(root, sub, "*.py")):
            if any(n.startswith("zip_d2.pseudo") for n in _imported_modules(path, f"zip_d2.{sub}")):
                offenders.append(os.path.relpath(path, root))
    for name in ("text.py", "models.py", "config.py"):
        if any(n.startswith("zip_d2.pseudo") for n in _imported_modules(os.path.join(root, name),
                                                                        "zip_d2")):
            offenders.append(name)
    assert offenders == []


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_name(path):
    """``zip_d2/modeling/roi_heads.py`` -> ``zip_d2.modeling.roi_heads`` (a package's
    ``__init__.py`` -> the package)."""
    parts = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_modules():
    """{module name: path} of every source file of zip_d2."""
    return {_module_name(p): p
            for p in glob.glob(os.path.join(REPO, "zip_d2", "**", "*.py"), recursive=True)}


def _import_edges(path, name, modules):
    """The zip_d2 modules the file ``path`` (module ``name``) imports, lazy imports inside
    functions included: ``from pkg import sub`` counts as importing ``pkg.sub`` where that is a
    module, else ``pkg``."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _import_cycle(graph):
    """One cycle of the directed graph {node: set of nodes} as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_import_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _import_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_import_graph_has_no_circle_even_through_lazy_imports():
    modules = _package_modules()
    graph = {name: _import_edges(path, name, modules) for name, path in modules.items()}
    assert "zip_d2.modeling.vocabulary" in graph["zip_d2.modeling.roi_heads"]  # the graph is real
    cycle = _import_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def _source_files_outside_tests():
    """Every Python file of the repository that is not under tests/ (library, tools, setup)."""
    skip = {os.path.join(REPO, d) for d in ("tests", ".venv", ".git", "work", "build")}
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip
                   and not d.startswith(".")]
        yield from (os.path.join(folder, f) for f in files if f.endswith(".py"))


def _imports_and_path_loads(path):
    """(top-level names of the modules ``path`` imports, lazily included; the names of the
    calls in it that load code by file path or change the import path)."""
    loaders = {"spec_from_file_location", "run_path", "SourceFileLoader"}
    imported, loads = set(), set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value
            on_sys_path = (isinstance(owner, ast.Attribute) and owner.attr == "path"
                           and isinstance(owner.value, ast.Name) and owner.value.id == "sys")
            if name in loaders or (on_sys_path and name in ("insert", "append")):
                loads.add(name)
    return imported, loads


def test_nothing_outside_tests_imports_tests_and_no_tool_imports_another_tool():
    def stems(folder):
        return {os.path.basename(p)[: -len(".py")] for p in glob.glob(os.path.join(folder, "*.py"))}

    test_modules = stems(os.path.join(REPO, "tests")) | {"tests"}
    tools = os.path.join(REPO, "tools")
    tool_modules = stems(tools) | stems(os.path.join(tools, "bench"))
    experiments = os.path.join(tools, "experiments")
    offenders = []
    for path in _source_files_outside_tests():
        imported, loads = _imports_and_path_loads(path)
        forbidden = set(test_modules)
        if path.startswith(tools + os.sep):
            # Commands are run, not imported. The experiment scripts are one program that
            # shares tools/experiments/common.py among themselves, and import nothing else here.
            forbidden |= tool_modules | (set() if path.startswith(experiments + os.sep)
                                         else stems(experiments))
        bad = sorted(imported & forbidden) + sorted(loads)
        if bad:
            offenders.append(f"{os.path.relpath(path, REPO)}: {', '.join(bad)}")
    assert offenders == []
