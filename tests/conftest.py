"""Shared fixtures: small synthetic datasets made once per test session."""
import importlib.util
import os
import subprocess
import sys

import pytest

from zip_d2.data.synthetic import SceneParams, make_synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small non-square synthetic dataset: {"root", "train", "val"} paths."""
    root = str(tmp_path_factory.mktemp("synthetic"))
    paths = make_synthetic_dataset(root, num_train=24, num_val=8, seed=0,
                                   params=SceneParams(width=96, height=80, min_radius=8,
                                                      max_radius=16))
    return {"root": root, **paths}


def load_tool(name):
    """``tools/<name>.py`` imported as a module (to call its main() in this process)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(script, *args, timeout=600, env=None):
    """Run ``tools/<script>`` with this interpreter from the repo root; return CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env)


def tiny_pseudo_cfg(**overrides):
    """The tiny random-weight pseudo-label preset, with ``PSEUDO.<key>=value`` overrides
    (dotted keys below PSEUDO, e.g. ``tiny_pseudo_cfg(**{"SAM.POINT_PROMPT": True})``)."""
    from zip_d2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml"))
    for key, value in overrides.items():
        node = cfg.PSEUDO
        *path, last = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, last, value)
    return cfg
