"""Missing weights are found in seconds, before any model is built or worker started, and
reported with one line per missing model naming the key that provides it.

"No network" is made independent of the machine running the tests: every proxy variable points
at a local port that refuses connections (or at a listener that never answers), and every
weight cache is an empty temporary folder.
"""
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import load_tool

from zip_d2 import models
from zip_d2.config import get_cfg
from zip_d2.models import (
    MissingWeightsError,
    WeightSource,
    checkpoint_weight_source,
    clip_weight_source,
    require_weights,
    sam_weight_source,
)
from zip_d2.pseudo import required_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "configs", "pseudo", "zip_paper.yaml")
PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")


@pytest.fixture
def refusing_port():
    """A local port that refuses every connection (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Every weight cache empty, downloads allowed, and no probe result remembered."""
    import huggingface_hub.constants

    for var in ("ZIP_D2_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ZIP_D2_CACHE", str(tmp_path / "zip_d2_cache"))
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "fvcore_cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(models, "_PROBED", {})
    return tmp_path


def offline_env(tmp_path, port):
    """Environment for a subprocess with no way out and empty caches."""
    env = dict(os.environ, HOME=str(tmp_path / "home"), ZIP_D2_CACHE=str(tmp_path / "zc"),
               HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               FVCORE_CACHE=str(tmp_path / "fv"), no_proxy="", NO_PROXY="",
               **{v: f"http://127.0.0.1:{port}" for v in PROXY_VARS})
    for var in ("ZIP_D2_OFFLINE", "HF_HUB_OFFLINE"):
        env.pop(var, None)
    return env


def paper_cfg(cache):
    cfg = get_cfg()
    cfg.merge_from_file(PAPER)
    cfg.PSEUDO.CACHE_DIR = str(cache)
    return cfg


def test_a_host_that_refuses_is_unreachable_at_once(empty_caches, monkeypatch, refusing_port):
    for var in PROXY_VARS:
        monkeypatch.setenv(var, f"http://127.0.0.1:{refusing_port}")
    start = time.perf_counter()
    reason = models._probe("https://huggingface.co/timm/x/resolve/main/f.bin")
    assert reason.startswith("huggingface.co unreachable")
    assert time.perf_counter() - start < 2


def test_a_host_that_never_answers_is_unreachable_after_the_probe_timeout(empty_caches,
                                                                         monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel; nobody ever answers
    monkeypatch.setattr(models, "PROBE_TIMEOUT_S", 1.0)
    try:
        start = time.perf_counter()
        reason = models._probe(f"http://127.0.0.1:{silent.getsockname()[1]}/sam.pth")
        elapsed = time.perf_counter() - start
    finally:
        silent.close()
    assert "unreachable" in reason and "timed out" in reason
    assert 0.9 < elapsed < 3


def test_a_host_that_answers_allows_the_download_whatever_the_status(empty_caches):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sam_vit_h_4b8939.pth"
        assert models._probe(url) == ""
        require_weights([WeightSource("SAM ViT-H", "PSEUDO.SAM.CHECKPOINT", "", url=url)])
    finally:
        server.shutdown()


def test_sources_are_found_in_the_caches_without_the_network(empty_caches):
    cache = empty_caches / "cache"
    sam = sam_weight_source("vit_h", cache_dir=str(cache))
    assert sam.local == "" and sam.cache == str(cache / "sam_vit_h_4b8939.pth")
    os.makedirs(cache)
    open(sam.cache, "wb").close()
    assert sam_weight_source("vit_h", cache_dir=str(cache)).local == sam.cache
    clip = clip_weight_source("ViT-B-16", "openai", str(cache), key="PSEUDO.CLIP.PRETRAINED")
    assert clip.what == "CLIP ViT-B/16" and clip.local == "" and "huggingface.co" in clip.url
    given = empty_caches / "vitb16.pt"
    given.write_bytes(b"")
    assert clip_weight_source("ViT-B-16", str(given)).local == str(given)
    zoo = checkpoint_weight_source("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert zoo.url == "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    assert zoo.cache.startswith(str(empty_caches / "fvcore_cache")) and zoo.local == ""
    catalog = checkpoint_weight_source("catalog://ImageNetPretrained/MSRA/R-50")
    assert catalog.url.startswith("https://dl.fbaipublicfiles.com/") and catalog.local == ""


def test_the_paper_config_needs_three_weights_and_random_presets_none(empty_caches):
    cfg = paper_cfg(empty_caches / "cache")
    assert [(s.what, s.key) for s in required_weights(cfg)] == [
        ("CLIP ViT-B/16", "PSEUDO.CLIP.PRETRAINED"), ("CLIP RN50x64", "PSEUDO.BOUNDARY.PRETRAINED"),
        ("SAM ViT-H", "PSEUDO.SAM.CHECKPOINT")]
    cfg.PSEUDO.METHOD = "sam-clip"
    assert [s.what for s in required_weights(cfg)] == ["CLIP ViT-B/16", "SAM ViT-H"]
    cfg.PSEUDO.RANDOM_WEIGHTS = True
    assert required_weights(cfg) == []


@pytest.mark.parametrize("method", ["zip", "zip-no-sam", "sam-clip"])
def test_required_weights_name_exactly_the_models_each_labeler_loads(method):
    from conftest import tiny_pseudo_cfg

    from zip_d2.pseudo import build_labeler
    from zip_d2.pseudo.pipeline import METHOD_MODELS

    labeler = build_labeler(tiny_pseudo_cfg(METHOD=method))
    assert tuple(labeler._weights()) == METHOD_MODELS[method]


def test_unreachable_hub_stops_the_job_in_seconds_with_one_line_naming_every_weight(
        empty_caches, monkeypatch, refusing_port, capsys):
    images = os.path.join(REPO, "datasets", "demo", "images")
    out = empty_caches / "demo" / "labels.json"
    for var in PROXY_VARS:
        monkeypatch.setenv(var, f"http://127.0.0.1:{refusing_port}")
    monkeypatch.setenv("no_proxy", "")
    generate = load_tool("generate_pseudo_labels")  # imports are not the job's time
    start = time.perf_counter()
    rc = generate.main(["--images", images, "--config", PAPER, "--out", str(out),
                        "PSEUDO.CACHE_DIR", str(empty_caches / "cache")])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and elapsed < 10, (rc, elapsed, err)
    assert len(err) == 4 and err[0].startswith("error: missing weights"), err
    for line, (what, key) in zip(err[1:], [("CLIP ViT-B/16", "PSEUDO.CLIP.PRETRAINED"),
                                           ("CLIP RN50x64", "PSEUDO.BOUNDARY.PRETRAINED"),
                                           ("SAM ViT-H", "PSEUDO.SAM.CHECKPOINT")]):
        assert line.startswith(f"  {what}: set {key} to a local copy of https://"), line
    # Where a download is kept: the SAM file, open_clip's hub cache for CLIP.
    assert err[3].endswith(f"(or save it as {empty_caches / 'cache' / 'sam_vit_h_4b8939.pth'})")
    assert "(downloads are kept in " in err[1]
    assert "huggingface.co unreachable" in err[0]
    assert not os.path.exists(str(out) + ".shards")


def test_offline_cli_prints_one_line_and_no_download_retries(tmp_path, refusing_port):
    """What `make demo` prints on a machine without network: one line per missing model on
    stderr after a head line, nothing else, and no output folder left behind."""
    out = tmp_path / "demo" / "labels.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "generate_pseudo_labels.py"), "--images",
         os.path.join(REPO, "datasets", "demo", "images"), "--config", PAPER, "--out", str(out)],
        env=offline_env(tmp_path, refusing_port), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 4 and proc.stderr.startswith("error: missing weights"), \
        proc.stderr
    assert not out.parent.exists()
    assert "Retrying" not in proc.stderr
    assert all(w in proc.stderr for w in ("CLIP ViT-B/16", "CLIP RN50x64", "SAM ViT-H"))


def test_every_missing_file_is_named_in_the_one_line(empty_caches):
    cfg = paper_cfg(empty_caches / "cache")
    cfg.PSEUDO.CLIP.PRETRAINED = str(empty_caches / "vit.pt")
    cfg.PSEUDO.BOUNDARY.PRETRAINED = "laion-nonsense"
    cfg.PSEUDO.SAM.CHECKPOINT = str(empty_caches / "sam.pth")
    with pytest.raises(MissingWeightsError) as e:
        require_weights(required_weights(cfg))
    msg = str(e.value)
    assert len(msg.splitlines()) == 4
    assert f"PSEUDO.CLIP.PRETRAINED names the file '{empty_caches / 'vit.pt'}'" in msg
    assert "PSEUDO.BOUNDARY.PRETRAINED 'laion-nonsense' is neither a file nor" in msg
    assert f"PSEUDO.SAM.CHECKPOINT names the file '{empty_caches / 'sam.pth'}'" in msg


def test_each_download_host_is_probed_once(empty_caches, monkeypatch):
    probed = []

    def fake_probe(url):
        probed.append(url)
        return "huggingface.co unreachable: test"

    monkeypatch.setattr(models, "_probe", fake_probe)
    with pytest.raises(MissingWeightsError):
        require_weights(required_weights(paper_cfg(empty_caches / "cache")))
    hosts = sorted(u.split("/")[2] for u in probed)
    assert hosts == ["dl.fbaipublicfiles.com", "huggingface.co"]


def test_a_reachable_host_still_gets_the_download(empty_caches, monkeypatch, tmp_path):
    """The probe only stops downloads that cannot work: a served checkpoint is fetched."""
    import functools
    import hashlib

    import torch

    for var in PROXY_VARS + ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    torch.manual_seed(0)
    src = served / "src.pth"
    torch.save(models.create_sam("tiny", random_weights=True).state_dict(), src)
    name = f"sam_tiny_{hashlib.md5(src.read_bytes()).hexdigest()[:6]}.pth"
    src.rename(served / name)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0),
                                    functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
        monkeypatch.setitem(models.SAM_CHECKPOINT_URLS, "tiny", url)
        sam = models.create_sam("tiny", cache_dir=str(empty_caches / "cache"))
    finally:
        server.shutdown()
    assert sam.zip_weights == url and (empty_caches / "cache" / name).is_file()
