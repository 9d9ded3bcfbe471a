#!/usr/bin/env python
"""Install detectron2 into the running Python, unless a working one is already importable.

Detectron2's authors do not publish it on PyPI. The one registry route that works without
network access to GitHub is the wheel ``sal-detectron2==0.7.2``: its Python code is upstream
detectron2 (April 2024 main branch) but it is tagged ``cp310`` and carries a ``_C`` extension
compiled for Python 3.10 only. On other Pythons detectron2 runs without ``_C`` for everything
zip_d2 uses (RoIAlign and NMS come from torchvision), so this tool:

1. checks ``import detectron2`` first and leaves a working installation alone (for example one
   a user compiled from git);
2. downloads the pinned wheel (``pip download``) and checks its SHA-256;
3. rewrites it as a pure ``py3-none-any`` wheel holding only the ``detectron2`` package
   (no ``_C`` binary, no stray top-level ``tools`` package) and without the ``numpy<2`` pin,
   which the code does not need;
4. installs the rewritten wheel with ``--no-deps`` plus detectron2's runtime dependencies.

The result is an ordinary pip distribution: ``pip uninstall sal-detectron2`` removes it.

    python tools/install_detectron2.py [--cache-dir DIR] [--force]
    python tools/install_detectron2.py --wheel-dir DIR   # only build the pure wheel into DIR

``--wheel-dir`` is for machines without network (tools/bench/gpu_check.sh carries the wheel there).
"""
import argparse
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL_REQ = "sal-detectron2==0.7.2"
WHEEL_NAME = "sal_detectron2-0.7.2-cp310-none-any.whl"
WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
PURE_WHEEL_NAME = "sal_detectron2-0.7.2-py3-none-any.whl"
# detectron2's install_requires that its code imports at run time (black, a formatter used only
# by its config dumper's pretty-printing, is imported lazily and optional).
RUNTIME_DEPS = [
    "Pillow>=7.1", "matplotlib", "pycocotools>=2.0.2", "termcolor>=1.1", "yacs>=0.1.8",
    "tabulate", "cloudpickle", "tqdm>4.29.0", "tensorboard", "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1", "packaging", "fvcore>=0.1.5,<0.1.6", "iopath>=0.1.7,<0.1.10",
    "setuptools<81",  # detectron2.model_zoo imports pkg_resources
]


def working_detectron2():
    """Return detectron2's location if it imports and can build a model config, else None."""
    probe = (
        "import detectron2, detectron2.config, detectron2.modeling; "
        "detectron2.config.get_cfg(); print(detectron2.__file__)"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def pip(*args):
    cmd = [sys.executable, "-m", "pip", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise SystemExit(
            f"install_detectron2: `{' '.join(cmd[2:])}` failed (is PyPI reachable?): "
            + " | ".join(tail)
        )
    return res.stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def rewrite_pure(src, dst):
    """Copy the ``detectron2`` package of wheel ``src`` into a pure-Python wheel ``dst``."""
    dist_info = "sal_detectron2-0.7.2.dist-info"
    records = []
    # Fixed timestamps keep the rewritten wheel byte-for-byte reproducible.
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:

        def write(name, data):
            info = zipfile.ZipInfo(name, date_time=(2024, 8, 2, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
            records.append(record_line(name, data))

        for name in sorted(zin.namelist()):
            if name.startswith("detectron2/") and not name.endswith(".so"):
                write(name, zin.read(name))
        metadata = zin.read(f"{dist_info}/METADATA").decode()
        metadata = "\n".join(
            line for line in metadata.split("\n")
            if line not in ("Requires-Dist: numpy<2", "Requires-Dist: black")
        )
        write(f"{dist_info}/METADATA", metadata.encode())
        write(f"{dist_info}/LICENSE", zin.read(f"{dist_info}/LICENSE"))
        write(f"{dist_info}/top_level.txt", b"detectron2\n")
        wheel = (
            "Wheel-Version: 1.0\nGenerator: zip_d2 tools/install_detectron2.py\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        )
        write(f"{dist_info}/WHEEL", wheel.encode())
        records.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2024, 8, 2, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zout.writestr(info, "\n".join(records) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/zip_d2/detectron2"),
                        help="where the downloaded and rewritten wheels are kept")
    parser.add_argument("--force", action="store_true",
                        help="install even if a working detectron2 is importable")
    parser.add_argument("--wheel-dir", help="build the pure wheel into this folder and stop: "
                        "no install, no dependencies")
    args = parser.parse_args(argv)

    found = None if args.wheel_dir else working_detectron2()
    if found and not args.force:
        print(f"install_detectron2: working detectron2 found at {found}; left alone")
        return 0

    os.makedirs(args.cache_dir, exist_ok=True)
    wheel = os.path.join(args.cache_dir, WHEEL_NAME)
    if not (os.path.exists(wheel) and sha256(wheel) == WHEEL_SHA256):
        print(f"install_detectron2: downloading {WHEEL_REQ} from the package registry")
        pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
            "-d", args.cache_dir, WHEEL_REQ)
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(
            f"install_detectron2: {wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; "
            "delete it and retry"
        )
    out_dir = args.wheel_dir or args.cache_dir
    os.makedirs(out_dir, exist_ok=True)
    pure = os.path.join(out_dir, PURE_WHEEL_NAME)
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".whl", delete=False) as tmp:
        pass
    rewrite_pure(wheel, tmp.name)
    os.replace(tmp.name, pure)
    print(f"install_detectron2: rewrote it as {pure} (pure Python, no _C, no numpy<2 pin)")
    if args.wheel_dir:
        return 0
    pip("install", "--no-deps", "--force-reinstall", pure)
    pip("install", *RUNTIME_DEPS)
    found = working_detectron2()
    if not found:
        raise SystemExit("install_detectron2: installed, but `import detectron2` still fails")
    print(f"install_detectron2: installed detectron2 0.7.2 (sal-detectron2 wheel) at {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
