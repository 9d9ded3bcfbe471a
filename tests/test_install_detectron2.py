"""tools/install_detectron2.py: the registry wheel rewritten as a reproducible pure wheel."""
import base64
import hashlib
import importlib.util
import os
import zipfile

import pytest
from conftest import REPO, run_tool

spec = importlib.util.spec_from_file_location(
    "install_detectron2", os.path.join(REPO, "tools", "install_detectron2.py"))
install_detectron2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_detectron2)

CACHED = os.path.expanduser(f"~/.cache/zip_d2/detectron2/{install_detectron2.WHEEL_NAME}")


@pytest.fixture(scope="module")
def registry_wheel():
    if not os.path.exists(CACHED):
        pytest.skip("registry wheel not cached (set-up used an existing detectron2)")
    return CACHED


def test_rewritten_wheel_is_pure_reproducible_and_unpinned(registry_wheel, tmp_path):
    a, b = tmp_path / "a.whl", tmp_path / "b.whl"
    install_detectron2.rewrite_pure(registry_wheel, str(a))
    install_detectron2.rewrite_pure(registry_wheel, str(b))
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        names = z.namelist()
        assert not [n for n in names if n.endswith(".so")]
        assert all(n.startswith(("detectron2/", "sal_detectron2-0.7.2.dist-info/")) for n in names)
        assert "detectron2/modeling/roi_heads/fast_rcnn.py" in names
        assert "Tag: py3-none-any" in z.read("sal_detectron2-0.7.2.dist-info/WHEEL").decode()
        assert "numpy<2" not in z.read("sal_detectron2-0.7.2.dist-info/METADATA").decode()
        # Every RECORD hash matches its file, so pip accepts and can uninstall the wheel.
        for line in z.read("sal_detectron2-0.7.2.dist-info/RECORD").decode().splitlines():
            name, digest, _ = line.split(",")
            if digest:
                data = z.read(name)
                expect = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert digest == "sha256=" + expect.decode(), name


def test_an_importable_detectron2_is_left_alone():
    res = run_tool("install_detectron2.py", timeout=120)
    assert res.returncode == 0
    assert "working detectron2 found" in res.stdout and "left alone" in res.stdout


def test_unreachable_registry_is_one_clear_error(tmp_path):
    # --force skips the "already installed" check; an empty cache forces a download, which
    # fails against a closed local port. Nothing is installed or removed on failure.
    res = run_tool("install_detectron2.py", "--force", "--cache-dir", tmp_path / "cache",
                   env={"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                        "PIP_FIND_LINKS": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"},
                   timeout=120)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "is PyPI reachable?" in res.stderr
