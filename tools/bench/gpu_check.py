#!/usr/bin/env python
"""The prepared GPU check: every number zip_d2 needs from one GPU, in one run of minutes.

Sections, in this order (each prints its numbers; the report is rewritten after each, so a
run stopped by its time limit keeps what it measured):
  environment       torch, CUDA, device, package versions, TF32 settings
  postprocess       mask NMS + boxes: the torch path on the GPU must keep exactly what the
                    CPU (run-length) path keeps, TF32 on or off; per-image CPU/GPU time at 64
                    detections of 640x480 (tools/bench/benchmark_cpu_per_image.py)
  kmeans            zip_d2.pseudo.clusters.kmeans at the paper's size (21,888 x 2048, K=20,
                    100 iterations) in fp32 / fp16 / bf16: time and agreement with fp32
  tiny_cuda_vs_cpu  the tiny preset's labels through the job on CUDA and on the CPU: same?
  train             Mask R-CNN R50-FPN (configs/coco/mask_rcnn_R50_FPN_1x.yaml), RANDOM init,
                    AMP, 20 iterations on synthetic 640x480 scenes: s/iteration, peak memory
  job               the paper preset (configs/pseudo/zip_paper.yaml) with RANDOM weights on
                    COCO-sized images through the pseudo-label job: images/s, per stage, peak
                    memory (tools/bench/benchmark_pseudo_labels.py)

On the GPU machine (no network; the wheels travel in .whl/, see tools/bench/gpu_check.sh):
    bash tools/bench/gpu_check.sh                 # report in $OUT/gpu_check.{json,md}
Here, the CPU-runnable parts in well under a minute (tiny preset, small images, 2 iterations;
tests/test_gpu_check.py runs this):
    python tools/bench/gpu_check.py --dry-run --out-dir work/gpu_check_dry
Check a folder of wheels for that machine (one version each, cp312/pure tags, every requirement
carried or among the GPU image's packages listed below, size):
    python tools/bench/gpu_check.py --check-wheels .whl
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TOOLS))

SECTIONS = ["environment", "postprocess", "kmeans", "tiny_cuda_vs_cpu", "train", "job"]
# Rough seconds each section needs on an H100/H200 (model building included): a section is
# skipped, with the reason recorded, when less than this is left of --budget-s.
ESTIMATE_S = {"environment": 5, "postprocess": 20, "kmeans": 30, "tiny_cuda_vs_cpu": 40,
              "train": 90, "job": 180}


# Packages of the GPU machine's image (Python 3.12, torch 2.11 + CUDA 13; its package list as
# read on 2026-11-17) that zip_d2 and the carried wheels rely on. Anything else is carried.
GPU_IMAGE_PACKAGES = {
    "torch", "torchvision", "numpy", "scipy", "scikit-image", "opencv-python-headless", "pillow",
    "matplotlib", "tqdm", "tabulate", "cloudpickle", "tensorboard", "packaging", "pyyaml", "regex",
    "huggingface-hub", "safetensors", "timm", "portalocker", "setuptools"}
# The GPU check's transfer size: the wheels travel with the working tree in one copy of at
# most this many MiB, so they may take a quarter of it.
WHEEL_LIMIT_MIB = 64


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out-dir", help="where gpu_check.json and gpu_check.md go")
    p.add_argument("--check-wheels", metavar="DIR", help="only check the wheels in DIR")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, tiny preset, small images, 2 training iterations")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="skip a section when less than its estimate is left")
    return p.parse_args(argv)


# -- helpers -------------------------------------------------------------------------------------
def _say(msg):
    print(msg, flush=True)


def _run_tool(script, argv):
    """Run ``tools/<script>`` with this interpreter in its own process (a tool is a command,
    not a module to import); RuntimeError naming it if it fails."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, os.path.join(TOOLS, script), *argv], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"tools/{script} {' '.join(argv)} exited with {done.returncode}")


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(fn, repeats, device, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _agreement(a, b, k):
    """Fraction of points with the same cluster id, and after the best one-to-one matching of
    ids (Hungarian, scipy), and the adjusted Rand index. a, b: (N,) int labels in [0, k)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a), np.asarray(b)
    table = np.zeros((k, k), np.int64)
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(-table)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    n = len(a)
    index, ea, eb = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = ea * eb / pairs(np.array([n]))
    ari = (index - expected) / (0.5 * (ea + eb) - expected) if ea + eb != 2 * expected else 1.0
    return {"same_id": float((a == b).mean()), "matched": float(table[rows, cols].sum() / n),
            "adjusted_rand": float(ari)}


# -- sections ------------------------------------------------------------------------------------
def environment(ctx):
    import torch

    from zip_d2.labels.coco_output import package_versions

    cuda = torch.cuda.is_available()
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": cuda, "cuda_version": torch.version.cuda, "cpu_count": os.cpu_count(),
           "packages": package_versions(), "dry_run": ctx["dry"], "device": ctx["device"],
           "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
           "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2 ** 30,
                   multiprocessors=props.multi_processor_count)
    for k, v in out.items():
        _say(f"  {k}: {v}")
    return out


def postprocess(ctx):
    """Exactness of the device NMS path against the CPU path, then the per-image timing."""
    import numpy as np
    import torch

    from zip_d2.benchmarks.inputs import sam_like_masks
    from zip_d2.pseudo.masks import select_masks

    device = ctx["device"]
    rng = np.random.default_rng(0)
    h, w, n = (480, 640, 96) if not ctx["dry"] else (60, 80, 24)
    masks, scores = sam_like_masks(rng, n, h, w)
    masks[: n // 8] = masks[n // 8: n // 4]          # exact duplicates...
    scores[: n // 8] = scores[n // 8: n // 4]        # ...with tied scores
    masks[-3:] = False                               # empty masks
    scores = np.round(scores, 1)                     # more ties
    out = {"masks": n, "size": [w, h], "exact": {}}
    ref = select_masks(masks, scores, 0.5, 100, 0.0)
    tensor = torch.from_numpy(masks).to(device)
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for thr in (0.3, 0.5, 0.8):
                keep, boxes = select_masks(tensor, scores, thr, 100, 0.0)
                rk, rb = ref if thr == 0.5 else select_masks(masks, scores, thr, 100, 0.0)
                same = keep.tolist() == rk.tolist() and np.array_equal(boxes, rb)
                out["exact"][f"tf32={tf32},iou>{thr}"] = same
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    out["exact_all"] = all(out["exact"].values())
    _say(f"  {device} NMS/boxes identical to the CPU path on {n} masks "
         f"(ties, duplicates, empties): {out['exact_all']} {out['exact']}")
    timings = {}
    for where in dict.fromkeys([device, "cpu"]):
        path = os.path.join(ctx["tmp"], f"cpu_per_image_{where.replace(':', '')}.json")
        argv = ["--device", where, "--json-out", path]
        if ctx["dry"]:
            argv += ["--repeats", "3"]
        _run_tool("benchmark_cpu_per_image.py", argv)
        with open(path, encoding="utf-8") as f:
            timings[where] = json.load(f)
    out["per_image"] = timings
    return out


def kmeans(ctx):
    import numpy as np
    import torch

    from zip_d2.data.constructed_features import boundary_aware_features, packed_discs
    from zip_d2.pseudo.clusters import kmeans as run_kmeans

    device = ctx["device"]
    (h, w), d, k, iters = ((128, 171), 2048, 20, 100) if not ctx["dry"] else ((24, 32), 64, 8, 20)
    repeats = 5 if not ctx["dry"] else 2
    gen = torch.Generator().manual_seed(0)
    random_x = torch.randn(h * w, d, generator=gen)
    # A scene of touching objects (the project's constructed boundary-aware features), with
    # noise as large as the prototypes' spread: fuzzy clusters, so rounding can move points.
    rng = np.random.default_rng(0)
    objects = packed_discs(rng, (h, w), num_discs=12, radius=(0.08 * h, 0.2 * h),
                           min_cells=4)
    scene = boundary_aware_features(objects, rng, dim=d, separation=1.0, noise=2.0,
                                    noise_sigma=1.0)
    scene_x = torch.from_numpy(scene.reshape(-1, d))
    out = {"n": h * w, "d": d, "k": k, "max_iters": iters, "device": device, "runs": {}}
    labels = {}
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        xr = random_x.to(device=device, dtype=dtype)
        xs = scene_x.to(device=device, dtype=dtype)
        run = {"random_ms": _median_ms(lambda: run_kmeans(xr, k, iters), repeats, device),
               "scene_ms": _median_ms(lambda: run_kmeans(xs, k, iters), repeats, device)}
        labels[name] = (run_kmeans(xs, k, iters)[0].cpu().numpy(),
                        run_kmeans(xr, k, iters)[0].cpu().numpy())
        out["runs"][name] = run
    for name in ("fp16", "bf16"):
        for j, features in enumerate(("scene", "random")):
            out["runs"][name][f"{features}_agreement_with_fp32"] = _agreement(
                labels[name][j], labels["fp32"][j], k)
    if not str(device).startswith("cuda"):
        out["note"] = ("CPU: half-precision products are slow here and the labelers use them on "
                       "CUDA only; these numbers only exercise the code path")
    for name, run in out["runs"].items():
        _say(f"  {name}: {json.dumps(run)}")
    return out


def _tiny_images(ctx, n, size):
    from zip_d2.benchmarks.inputs import make_images

    folder = os.path.join(ctx["tmp"], f"images_{size[0]}x{size[1]}_{n}")
    if not os.path.isdir(folder):
        make_images(folder, n, *size)
    return folder


def tiny_cuda_vs_cpu(ctx):
    import numpy as np
    from pycocotools import mask as mask_utils

    from zip_d2.config import get_cfg
    from zip_d2.labels.job import JobOptions, run_job

    device = ctx["device"]
    n = 6 if not ctx["dry"] else 2
    folder = _tiny_images(ctx, n, (320, 240) if not ctx["dry"] else (160, 120))
    runs = {}
    # Without a GPU (--dry-run) the CPU is compared with itself: the comparison still runs.
    names = ("cpu", device) if device != "cpu" else ("cpu", "cpu again")
    for name in names:
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml"))
        cfg.PSEUDO.DEVICE = "cpu" if name.startswith("cpu") else device
        out = os.path.join(ctx["tmp"], f"tiny_{name.replace(' ', '_').replace(':', '')}.json")
        opts = JobOptions(out=out, images=folder, batch_size=2, workers=0, overwrite=True,
                          progress=False, validate=True)
        start = time.perf_counter()
        result = run_job(cfg, opts)
        with open(out, encoding="utf-8") as f:
            runs[name] = (json.load(f), time.perf_counter() - start, result.problems)
    (a, ta, pa), (b, tb, pb) = runs.values()
    per_image = {}
    for ann in a["annotations"] + b["annotations"]:
        per_image.setdefault(ann["image_id"], ([], []))
    for ann in a["annotations"]:
        per_image[ann["image_id"]][0].append(ann)
    for ann in b["annotations"]:
        per_image[ann["image_id"]][1].append(ann)
    ious, score_diffs, same_count, same_categories = [], [], 0, 0
    for x, y in per_image.values():
        same_count += len(x) == len(y)
        same_categories += [v["category_id"] for v in x] == [v["category_id"] for v in y]
        for u, v in zip(x, y):
            ious.append(float(mask_utils.iou([u["segmentation"]], [v["segmentation"]], [0])[0][0]))
            score_diffs.append(abs(u["score"] - v["score"]))
    names = list(runs)
    out = {"compared": names, "images": n,
           "annotations": [len(a["annotations"]), len(b["annotations"])],
           "identical": a["annotations"] == b["annotations"],
           "images_with_same_count": same_count, "images_with_same_categories": same_categories,
           "images_total": len(per_image), "mean_mask_iou": float(np.mean(ious)) if ious else None,
           "min_mask_iou": float(np.min(ious)) if ious else None,
           "max_score_diff": float(np.max(score_diffs)) if score_diffs else None,
           "seconds": [ta, tb], "validation_problems": [len(pa), len(pb)]}
    _say(f"  {names[0]} vs {names[1]}: {json.dumps(out)}")
    return out


def train(ctx):
    import torch

    from detectron2.engine import hooks

    import zip_d2.modeling  # noqa: F401  (registers zip_d2's heads)
    from zip_d2.config import setup_cfg
    from zip_d2.data.synthetic import SceneParams, make_synthetic_dataset
    from zip_d2.engine import Trainer
    from zip_d2.engine.setup import preflight

    device, dry = ctx["device"], ctx["dry"]
    cuda = device.startswith("cuda")
    iters, batch = (20, 4) if not dry else (2, 1)
    params = SceneParams(width=640, height=480, min_radius=30, max_radius=110) if not dry \
        else SceneParams()
    root = os.path.join(ctx["tmp"], "synthetic")
    paths = make_synthetic_dataset(root, num_train=4 * batch, num_val=1, seed=0, params=params)
    out_dir = os.path.join(ctx["tmp"], "train")
    with open(paths["train"], encoding="utf-8") as f:
        num_classes = len(json.load(f)["categories"])  # training refuses a count that differs
    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device,
            "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes),
            # Random init: inputs scaled to unit variance so a randomly initialised trunk with
            # frozen (identity) norms keeps fp16-safe activations; the cost is unchanged.
            "MODEL.PIXEL_STD", "[57.375, 57.120, 58.395]",
            "DATASETS.TRAIN", "('gpu_check_train',)", "DATASETS.TEST", "()",
            "INPUT.MASK_FORMAT", "bitmask",  # the synthetic masks are RLE
            "SOLVER.MAX_ITER", str(iters), "SOLVER.IMS_PER_BATCH", str(batch),
            "SOLVER.AMP.ENABLED", str(cuda), "SOLVER.CHECKPOINT_PERIOD", "1000000",
            "DATALOADER.NUM_WORKERS", "4" if cuda else "0", "OUTPUT_DIR", out_dir]
    if dry:  # the same code path, sized for seconds on a CPU
        opts += ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "192",
                 "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
                 "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64"]
    cfg = setup_cfg(os.path.join(REPO, "configs", "coco", "mask_rcnn_R50_FPN_1x.yaml"), opts,
                    [("gpu_check_train", paths["train"], os.path.join(root, "train"))])
    preflight(cfg)
    _say("  !!! RANDOM INIT: MODEL.WEIGHTS is empty; this times training, it learns nothing !!!")
    # A labeler built by an earlier section made cuDNN deterministic for the whole process;
    # train as tools/train_net.py would (Detectron2's default_setup: CUDNN_BENCHMARK, default
    # algorithms).
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    # Detectron2 would log the whole model and a metrics line per iteration; this prints its own.
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    stamps, losses = [], []

    def after_step(t):
        _sync(device)
        stamps.append(time.perf_counter())
        history = t.storage.histories().get("total_loss")
        losses.append(float(history.latest()) if history is not None else float("nan"))

    trainer.register_hooks([hooks.CallbackHook(after_step=after_step)])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    steady = steps[min(5, len(steps) - 1):]
    out = {"config": "configs/coco/mask_rcnn_R50_FPN_1x.yaml", "random_init": True,
           "amp": bool(cfg.SOLVER.AMP.ENABLED), "iterations": len(steps), "batch": batch,
           "image_size": [params.width, params.height],
           "input_min_size": list(cfg.INPUT.MIN_SIZE_TRAIN), "first_iteration_s": steps[0],
           "median_iteration_s": statistics.median(steady),
           "images_per_s": batch / statistics.median(steady),
           "losses_first_last": [losses[0], losses[-1]],
           "losses_finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses))}
    if not cuda:
        out["amp_note"] = "CPU: AMP off (Detectron2's AMPTrainer is CUDA-only)"
    if cuda:
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    _say(f"  {json.dumps(out)}")
    return out


def job(ctx):
    path = os.path.join(ctx["tmp"], "pseudo_labels.json")
    overrides = []
    if ctx["dry"]:
        argv = ["--config", os.path.join(REPO, "configs", "pseudo", "tiny_random.yaml"),
                "--num-images", "3", "--size", "160x120", "--workers", "0", "--batch-size", "2",
                "--stage-images", "1", "--warmup", "1"]
    else:
        argv = ["--config", os.path.join(REPO, "configs", "pseudo", "zip_paper.yaml"),
                "--random-weights", "--num-images", "32", "--size", "640x480", "--workers", "8",
                "--batch-size", "4", "--stage-images", "6", "--warmup", "2"]
        # Random CLIP weights give no class a probability of 0.1, so nothing would reach SAM:
        # keep the top 5 classes, as a real image with five confident classes would.
        overrides = ["PSEUDO.CLIP.MIN_PROB", "0.0"]
    _run_tool("benchmark_pseudo_labels.py", argv + ["--json-out", path] + overrides)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# -- wheels for the GPU machine ----------------------------------------------------------------
def check_wheels(folder):
    """Problems (one line each) with the wheels in ``folder`` for a cp312 x86_64 Linux machine
    with no network; prints each wheel and the total size."""
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename

    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "linux_x86_64"]
    supported = set(cpython_tags((3, 12), platforms=platforms)) | set(
        compatible_tags((3, 12), "cp312", platforms=platforms))
    env = dict(default_environment(), python_version="3.12", python_full_version="3.12.3",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
               implementation_name="cpython", platform_python_implementation="CPython")
    wheels = sorted(f for f in os.listdir(folder) if f.endswith(".whl")) \
        if os.path.isdir(folder) else []
    if not wheels:
        return [f"no wheels in {folder}"]
    problems, carried, requires, total = [], {}, [], 0
    for name in wheels:
        path = os.path.join(folder, name)
        total += os.path.getsize(path)
        try:
            dist, version, _, tags = parse_wheel_filename(name)
            with zipfile.ZipFile(path) as z:
                meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
                lines = z.read(meta).decode("utf-8", "replace").splitlines()
        except Exception as e:  # a broken file is reported, not a crash of the check
            problems.append(f"{name}: not a readable wheel ({type(e).__name__}: {e})")
            continue
        print(f"  {os.path.getsize(path) / 2 ** 20:6.2f} MiB  {name}")
        if dist in carried:
            problems.append(f"{dist}: two versions ({carried[dist]} and {version}); keep one")
        carried[dist] = version
        if not tags & supported:
            problems.append(f"{name}: no tag that CPython 3.12 on x86_64 Linux accepts")
        for line in lines:
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if req.marker is None or req.marker.evaluate(dict(env, extra="")):
                    requires.append((dist, req))
    for dist, req in requires:
        needed = canonicalize_name(req.name)
        if needed not in carried and needed not in GPU_IMAGE_PACKAGES:
            problems.append(f"{dist} needs {req}: neither carried nor in the GPU image")
        elif needed in carried and not req.specifier.contains(str(carried[needed]),
                                                               prereleases=True):
            problems.append(f"{dist} needs {req}, but {needed} {carried[needed]} is carried")
    print(f"  {len(wheels)} wheels, {total / 2 ** 20:.1f} MiB (the GPU check's transfer, "
          f"working tree included, is at most {WHEEL_LIMIT_MIB} MiB)")
    if total > WHEEL_LIMIT_MIB * 2 ** 20 / 4:
        problems.append(f"{total / 2 ** 20:.1f} MiB of wheels leaves too little of "
                        f"{WHEEL_LIMIT_MIB} MiB for the working tree")
    return problems


# -- report --------------------------------------------------------------------------------------
def _markdown(report):
    lines = [f"# zip_d2 GPU check ({'DRY RUN on CPU' if report['dry_run'] else report['device']})",
             "", f"started {report['started']}, {report['elapsed_s']:.0f} s", ""]
    for name in SECTIONS:
        if name in report["results"]:
            text = json.dumps(report["results"][name], indent=1)
            lines += [f"## {name}", "", "```", text, "```", ""]
        elif name in report["errors"]:
            lines += [f"## {name}: FAILED", "", "```", report["errors"][name], "```", ""]
        elif name in report["skipped"]:
            lines += [f"## {name}: skipped ({report['skipped'][name]})", ""]
    return "\n".join(lines) + "\n"


def _write(report, out_dir):
    for name, text in (("gpu_check.json", json.dumps(report, indent=1)),
                       ("gpu_check.md", _markdown(report))):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))


def main(argv=None):
    args = parse_args(argv)
    if args.check_wheels:
        problems = check_wheels(args.check_wheels)
        for line in problems:
            print(f"gpu_check: wheel problem: {line}", file=sys.stderr)
        print("wheels: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
        return 2 if problems else 0
    if not args.out_dir:
        print("gpu_check: error: give --out-dir DIR (or --check-wheels DIR)", file=sys.stderr)
        return 2
    import torch

    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(f"gpu_check: error: unknown section(s) {unknown}; choose from {SECTIONS}",
              file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: error: no GPU visible; use --dry-run for the CPU-runnable parts",
              file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    start = time.perf_counter()
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": args.dry_run,
              "device": device, "results": {}, "errors": {}, "skipped": {}, "elapsed_s": 0.0,
              "section_s": {}}
    with tempfile.TemporaryDirectory(prefix="zip_gpu_check_") as tmp:
        ctx = {"device": device, "dry": args.dry_run, "tmp": tmp}
        functions = {"environment": environment, "postprocess": postprocess, "kmeans": kmeans,
                     "tiny_cuda_vs_cpu": tiny_cuda_vs_cpu, "train": train, "job": job}
        for name in SECTIONS:
            if name not in wanted:
                continue
            left = args.budget_s - (time.perf_counter() - start)
            if not args.dry_run and left < ESTIMATE_S[name]:
                report["skipped"][name] = (f"{left:.0f} s of the budget left, "
                                           f"needs ~{ESTIMATE_S[name]} s")
                _say(f"== {name}: SKIPPED ({report['skipped'][name]})")
                continue
            _say(f"== {name}")
            t0 = time.perf_counter()
            try:
                report["results"][name] = functions[name](ctx)
            except Exception:  # one broken section must not cost the others' numbers
                report["errors"][name] = traceback.format_exc()
                _say(f"== {name}: FAILED\n{report['errors'][name]}")
            report["section_s"][name] = time.perf_counter() - t0
            report["elapsed_s"] = time.perf_counter() - start
            _write(report, args.out_dir)
    _say(f"== report: {os.path.join(args.out_dir, 'gpu_check.md')} and gpu_check.json; "
         f"{len(report['results'])} sections done, {len(report['errors'])} failed, "
         f"{len(report['skipped'])} skipped, {report['elapsed_s']:.0f} s")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
