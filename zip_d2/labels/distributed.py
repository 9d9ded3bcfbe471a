"""torchrun for the pseudo-label job: who am I, and rank 0's verdict for everyone.

Only small control messages travel between ranks (gloo, so CPU-only runs work the same); the
labels themselves go through the shard files.
"""
import datetime
import os
from typing import Any

import torch


def dist_env():
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(world_size: int, timeout_hours: float) -> bool:
    if world_size <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        # gloo: only small control messages travel, and it works the same on CPU-only tests.
        torch.distributed.init_process_group(
            "gloo", timeout=datetime.timedelta(hours=timeout_hours))
    return True


def broadcast_from_rank0(distributed: bool, rank: int, value: Any) -> Any:
    """Rank 0's ``value`` (its set-up verdict, the run number...), seen by every rank, so no
    rank waits on one that gave up and all take the same steps."""
    if not distributed:
        return value
    box = [value if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
