"""tools/bench/gpu_check.py: the CPU-runnable parts of the prepared GPU check, and its wheel
check."""
import json
import zipfile

import pytest
import torch
from conftest import run_tool


def test_dry_run_measures_every_section_on_the_cpu_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    res = run_tool("bench/gpu_check.py", "--dry-run", "--out-dir", out, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["errors"] == {} and report["skipped"] == {}
    r = report["results"]
    assert list(r) == ["environment", "postprocess", "kmeans", "tiny_cuda_vs_cpu", "train", "job"]
    assert r["postprocess"]["exact_all"] is True
    per_image = r["postprocess"]["per_image"]["cpu"]
    assert per_image["detections"] == 64 and per_image["main_thread_cpu_ms"] > 0
    for dtype in ("fp32", "fp16", "bf16"):
        assert r["kmeans"]["runs"][dtype]["random_ms"] > 0
    assert 0 <= r["kmeans"]["runs"]["bf16"]["scene_agreement_with_fp32"]["matched"] <= 1
    tiny = r["tiny_cuda_vs_cpu"]
    assert tiny["compared"] == ["cpu", "cpu again"] and tiny["identical"] is True
    assert tiny["images_total"] == tiny["images_with_same_count"] and tiny["annotations"][0] > 0
    train = r["train"]
    assert train["iterations"] == 2 and train["losses_finite"] and train["amp"] is False
    assert train["median_iteration_s"] > 0
    assert r["job"]["end_to_end_images_per_s"] > 0 and r["job"]["images"] == 3
    markdown = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in markdown and all(f"## {name}" in markdown for name in r)
    # Every number is printed as it is measured, not only written to the report.
    assert "MAIN-THREAD CPU WORK" in res.stdout and "END TO END" in res.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_the_real_check_needs_a_gpu_and_sections_must_exist(tmp_path):
    res = run_tool("bench/gpu_check.py", "--out-dir", tmp_path, timeout=120)
    assert res.returncode == 2 and "no GPU visible" in res.stderr
    res = run_tool("bench/gpu_check.py", "--dry-run", "--out-dir", tmp_path, "--sections",
                   "kmeans,jobs", timeout=120)
    assert res.returncode == 2 and "unknown section" in res.stderr and "jobs" in res.stderr


def _wheel(folder, filename, requires=()):
    name, version = filename.split("-")[:2]
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(folder / filename, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(meta) + "\n")


def _check(folder):
    return run_tool("bench/gpu_check.py", "--check-wheels", folder, timeout=120)


def test_wheel_check_accepts_a_complete_set_for_python_312(tmp_path):
    _wheel(tmp_path, "alpha-1.0-py3-none-any.whl",
           ["beta>=1", "torch", "numpy", "gamma; python_version < '3.8'", "delta; extra == 'dev'"])
    _wheel(tmp_path, "beta-1.2-cp310-abi3-manylinux2014_x86_64.whl")
    res = _check(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wheels: OK" in res.stdout and "2 wheels" in res.stdout


@pytest.mark.parametrize("wheels,message", [
    ({"alpha-1.0-py3-none-any.whl": ["zeta"]},
     "alpha needs zeta: neither carried nor in the GPU image"),
    ({"alpha-1.0-py3-none-any.whl": ["beta>=2"], "beta-1.2-py3-none-any.whl": []},
     "but beta 1.2 is carried"),
    ({"beta-1.2-py3-none-any.whl": [], "beta-1.3-py3-none-any.whl": []}, "beta: two versions"),
    ({"beta-1.2-cp311-cp311-manylinux2014_x86_64.whl": []}, "no tag that CPython 3.12"),
])
def test_wheel_check_reports_what_would_break_the_offline_install(tmp_path, wheels, message):
    for filename, requires in wheels.items():
        _wheel(tmp_path, filename, requires)
    res = _check(tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.stderr


def test_wheel_check_of_an_empty_folder_fails(tmp_path):
    res = _check(tmp_path)
    assert res.returncode == 2 and "no wheels" in res.stderr
