"""A tool's output holds no known third-party noise and no line printed twice."""
import os
import re

from conftest import run_tool

# Messages every tool used to print, none of which a user can act on.
NOISE = ["`torch.jit.script` is deprecated", "Using a boolean value for 'reinit' is deprecated",
         "torch.meshgrid: in an upcoming release", "The given NumPy array is not writable",
         "is_fx_tracing will return true"]


def consecutive_duplicates(text):
    """Log lines ("[time name]: message" or "LEVEL name: message") printed twice in a row, the
    mark of a logger with two handlers."""
    lines = [re.sub(r"^\S*\[\d\d/\d\d \d\d:\d\d:\d\d ", "[", line) for line in text.splitlines()]
    logged = re.compile(r"^(\S*\[\S+\]|\s*(WARNING|INFO|ERROR) \S+:)")
    return [a for a, b in zip(lines, lines[1:]) if a == b and a.strip() and logged.match(a)]


def test_training_with_wandb_prints_no_known_noise_and_no_duplicate_lines(synthetic_dataset,
                                                                          tmp_path):
    ds = synthetic_dataset
    res = run_tool(
        "train_net.py", "--config-file", "configs/synthetic/mask_rcnn_R18_synthetic.yaml",
        "--register-dataset", "synthetic_train", ds["train"], os.path.join(ds["root"], "train"),
        "--register-dataset", "synthetic_val", ds["val"], os.path.join(ds["root"], "val"),
        "INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MIN_SIZE_TEST", "80", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", "2",
        "DATALOADER.NUM_WORKERS", "0", "ZIP.DATASETS.CHECK_IMAGE_SIZES", "False",
        "ZIP.WANDB.ENABLED", "True", "ZIP.WANDB.MODE", "offline", "OUTPUT_DIR", tmp_path / "out")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Evaluation results for segm" in res.stdout + res.stderr  # the whole run happened
    for noise in NOISE:
        assert noise not in res.stderr, noise
    assert consecutive_duplicates(res.stdout + "\n" + res.stderr) == []


def test_every_tool_imports_the_noise_filters_before_anything_else():
    import ast
    import glob

    from conftest import REPO

    late = []
    for path in glob.glob(os.path.join(REPO, "tools", "**", "*.py"), recursive=True):
        name = os.path.relpath(path, REPO)
        # The installer runs before zip_d2 exists.
        if name == "tools/install_detectron2.py":
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        # The first import, possibly inside the guard that names the Python to use.
        first = next(n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.Try)))
        if isinstance(first, ast.Try):
            first = first.body[0]
        if not (isinstance(first, ast.Import) and first.names[0].name == "zip_d2.quiet"):
            late.append(name)
    assert late == []
