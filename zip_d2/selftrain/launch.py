"""What ``tools/self_train.py`` does once its arguments are parsed: build and check the run in
the launching process (one line on error), then run every round in every process of
detectron2's ``launch``."""
import sys

from torch.multiprocessing import ProcessExitedException

from detectron2.engine import launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import modeling  # noqa: F401  (registers zip_d2's heads, DropLoss included)
from ..config import SetupError
from ..data.validate import DatasetError
from ..engine.distributed import check_launch, set_cpu_threads
from .report import summary_table
from .rounds import SelfTrainingRun

__all__ = ["self_train", "self_train_worker"]

# Errors reported as one line (exit status 2) rather than a traceback.
REPORTED = (SetupError, DatasetError, ValueError)


def self_train_worker(run):
    """Runs in every process, with the run the launching process built and checked; exits
    with status 2 after a reported error."""
    for name in ("detectron2", "fvcore", "zip_d2"):  # as train_net's default_setup does
        setup_logger(name=name, distributed_rank=comm.get_rank())
    set_cpu_threads()
    try:
        summary = run.run()
    except REPORTED as e:
        # Every process meets the same error (decisions are shared), so all stop here.
        if comm.is_main_process():
            print(f"self_train: error: {e}", file=sys.stderr)
        sys.exit(2)
    if comm.is_main_process():
        print(summary_table(summary, run.output_dir))
        print(f"summary: {run.summary_path}; each round's log: {run.output_dir}/roundK/log.txt")


def self_train(args):
    """Build and check the run ``args`` (tools/self_train.py's parsed command line) describes,
    then launch :func:`self_train_worker`. Returns the exit status (2 after a one-line error)."""
    try:
        # Built once here (its inputs fingerprinted once) and handed to every process.
        run = SelfTrainingRun(args.config_file, args.labels, args.image_root, args.output_dir,
                              args.rounds, weights=args.weights, droploss=args.droploss,
                              opts=args.opts, register=args.register_dataset,
                              overwrite=args.overwrite)
        check_launch(run.base_cfg, args.num_gpus, args.num_machines, args.machine_rank,
                     args.dist_url)
        run.preflight()  # weights, labels, classes: one line before anything is written
    except REPORTED as e:
        print(f"self_train: error: {e}", file=sys.stderr)
        return 2
    try:
        launch(self_train_worker, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(run,))
    except SystemExit as e:  # one process: the worker ran here
        return e.code
    except ProcessExitedException as e:  # several: a worker exited with an error status
        return e.exit_code if e.exit_code and e.exit_code > 0 else 1
    return 0
