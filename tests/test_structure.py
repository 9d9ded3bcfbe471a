"""The import layering the data flow implies: the detector side never loads the engine."""
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
