"""Command-line flags the training tools share, built without importing torch or detectron2.

A tool builds its parser from here, parses, and only then imports torch and detectron2, so
``--help`` and argument errors answer in a fraction of a second. ``default_argument_parser``
mirrors detectron2's ``detectron2.engine.default_argument_parser`` flag for flag (names,
defaults, types, help; tests/test_arguments.py compares the two, so they cannot drift apart).
"""
import argparse
import os
import sys

__all__ = ["default_argument_parser", "add_launch_arguments", "add_register_argument",
           "LAUNCH_HELP"]

LAUNCH_HELP = """\
Processes: --num-gpus N starts N processes on this machine (detectron2's flag name). With
MODEL.DEVICE cuda each takes one GPU (NCCL); on a machine without a GPU, with MODEL.DEVICE cpu,
each is a CPU replica (gloo) with cores // N threads (OMP_NUM_THREADS overrides). The total
batch SOLVER.IMS_PER_BATCH is split between the processes. Several machines: --num-machines,
--machine-rank and the same --dist-url tcp://HOST:PORT on every machine; --dist-url auto picks
a free port on one machine.
"""

def default_argument_parser(epilog=None):
    """detectron2's ``default_argument_parser(epilog)``: ``--config-file``, ``--resume``,
    ``--eval-only``, the launch flags and the trailing KEY VALUE ``opts``, with its defaults
    (``--dist-url`` its per-user port) and help texts."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or f"""
Examples:

Run on single machine:
    $ {sys.argv[0]} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {sys.argv[0]} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Run on multiple machines:
    (machine0)$ {sys.argv[0]} --machine-rank 0 --num-machines 2 --dist-url <URL> [--other-flags]
    (machine1)$ {sys.argv[0]} --machine-rank 1 --num-machines 2 --dist-url <URL> [--other-flags]
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Whether to attempt to resume from the checkpoint directory. "
        "See documentation of `DefaultTrainer.resume_or_load()` for what it means.",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    add_launch_arguments(parser)
    parser.add_argument(
        "opts",
        help="""
Modify config options at the end of the command. For Yacs configs, use
space-separated "PATH.KEY VALUE" pairs.
For python-based LazyConfig, use "path.key=value".
        """.strip(),
        default=None,
        nargs=argparse.REMAINDER,
    )
    return parser


def add_launch_arguments(parser):
    """detectron2's launch flags (``--num-gpus``, ``--num-machines``, ``--machine-rank``,
    ``--dist-url``) with detectron2's own defaults, on any argparse parser."""
    parser.add_argument("--num-gpus", type=int, default=1, help="number of gpus *per machine*")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    # detectron2's deterministic per-user port: an orphan process of an earlier run shows up as
    # the port being taken.
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    parser.add_argument(
        "--dist-url",
        default="tcp://127.0.0.1:{}".format(port),
        help="initialization URL for pytorch distributed backend. See "
        "https://pytorch.org/docs/stable/distributed.html for details.",
    )
    return parser


def add_register_argument(parser):
    """``--register-dataset NAME JSON IMAGE_ROOT`` (repeatable) on an argparse parser."""
    parser.add_argument(
        "--register-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format JSON as dataset NAME (repeatable); same as an entry "
        "of ZIP.DATASETS.REGISTER",
    )
