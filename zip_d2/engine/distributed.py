"""Several processes per machine, on GPUs or on CPU cores, through detectron2's ``launch``.

Detectron2 spawns ``--num-gpus`` processes per machine and joins them with NCCL when a GPU is
visible, gloo otherwise. On a CPU-only machine ``--num-gpus N`` therefore means N processes,
each a data-parallel replica on a share of the cores. What detectron2 leaves to the caller,
and this module provides:

- ``ddp_device_ids``: DistributedDataParallel must get ``device_ids=None`` for a CPU model
  (detectron2's ``create_ddp_model`` otherwise passes the local rank, which DDP rejects);
- ``set_cpu_threads``: each process takes ``cores // processes`` intra-op threads (unless
  ``OMP_NUM_THREADS`` says otherwise), so N processes do not each start one thread per core;
- ``check_launch``: one-line errors for process counts the machine cannot run;
- ``run_on_main``: work done once, on rank 0, whose result (or error) every rank receives.
"""
import logging
import os
import pickle
import socket
import urllib.parse

import torch

from detectron2.utils import comm

from ..config import SetupError

__all__ = ["check_launch", "ddp_device_ids", "run_on_main", "set_cpu_threads"]

logger = logging.getLogger(__name__)


def check_launch(cfg, num_gpus, num_machines=1, machine_rank=0, dist_url="auto", train=True):
    """Refuse a launch the machine cannot run, in one line, before any process starts.

    Raises:
        SetupError: non-positive counts, more CUDA processes than GPUs, multi-process CPU
            training while a GPU is visible (detectron2's launch would pick NCCL, which cannot
            reduce CPU tensors), ``--dist-url auto`` across machines, a local ``--dist-url``
            port already taken (another run, or orphan processes of an old one), or (with
            ``train``) a total batch SOLVER.IMS_PER_BATCH the processes cannot split evenly.
    """
    if num_gpus < 1 or num_machines < 1:
        raise SetupError(f"--num-gpus and --num-machines must be >= 1 "
                         f"(got {num_gpus} and {num_machines})")
    if not 0 <= machine_rank < num_machines:
        raise SetupError(f"--machine-rank must be in [0, {num_machines}), got {machine_rank}")
    if num_machines > 1 and dist_url == "auto":
        raise SetupError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
    world_size = num_gpus * num_machines
    if cfg.MODEL.DEVICE.startswith("cuda"):
        visible = torch.cuda.device_count()
        if num_gpus > visible:
            raise SetupError(f"--num-gpus {num_gpus} with MODEL.DEVICE cuda but {visible} GPU(s) "
                             "are visible")
    elif world_size > 1 and torch.cuda.is_available():
        raise SetupError("multi-process training with MODEL.DEVICE cpu on a machine with a "
                         "visible GPU: detectron2 would join the processes with NCCL, which "
                         "needs GPU tensors; use MODEL.DEVICE cuda, or hide the GPUs with "
                         "CUDA_VISIBLE_DEVICES=")
    if world_size == 1:
        return
    if train and cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise SetupError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} (the total batch) "
                         f"must be a multiple of the {world_size} processes")
    if machine_rank == 0 and _local_port_taken(dist_url):
        raise SetupError(f"--dist-url {dist_url}: the port is in use (another run, or processes "
                         "left by an earlier one); pass --dist-url auto for a free port")


def _local_port_taken(dist_url):
    """Whether ``dist_url`` is a tcp:// URL on this host whose port cannot be bound."""
    url = urllib.parse.urlparse(dist_url)
    if url.scheme != "tcp" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As torch's TCPStore does: a port only in TIME_WAIT from a finished run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((url.hostname, url.port))
        except OSError:
            return True
    return False


def ddp_device_ids(cfg):
    """``device_ids`` for DistributedDataParallel: this process's GPU, or None on CPU."""
    if cfg.MODEL.DEVICE.startswith("cuda"):
        return [comm.get_local_rank()]
    return None


def set_cpu_threads():
    """Give this process its share of the machine's cores as torch intra-op threads.

    With P processes on a machine of C usable cores: ``max(1, C // P)`` threads each; one
    process keeps torch's default. An ``OMP_NUM_THREADS`` in the environment is the user's
    choice and is left alone. Call it first thing in every launched process.

    Returns:
        int: the number of threads this process now uses.
    """
    processes = comm.get_local_size()
    if processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // processes))
    threads = torch.get_num_threads()
    if processes > 1:
        logger.info("process %d of %d on this machine: %d torch thread(s)",
                    comm.get_local_rank(), processes, threads)
    return threads


def run_on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the main process only; every process returns its result.

    Decisions that must be the same everywhere (has this step finished?) and files written
    once (labels, summaries) go through here. An exception raised on the main process is
    raised on every process (the others get a copy), so all stop together rather than the
    others waiting at the next collective. The result must be picklable. Without a process
    group this is just ``fn(*args, **kwargs)``.
    """
    if comm.get_world_size() == 1:
        return fn(*args, **kwargs)
    result = error = None
    if comm.is_main_process():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # re-raised below, on every rank
            error = e
    shared = error
    if error is not None:
        try:
            pickle.dumps(error)
        except Exception:
            shared = RuntimeError(f"{type(error).__name__} on the main process: {error}")
    shared_result, shared = comm.all_gather((result, shared))[0]
    if comm.is_main_process():
        if error is not None:
            raise error
        return result
    if shared is not None:
        raise shared
    return shared_result
