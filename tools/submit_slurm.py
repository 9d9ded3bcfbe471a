#!/usr/bin/env python
"""Submit the pseudo-label job, training or self-training to SLURM (through submitit).

    python tools/submit_slurm.py label --tasks 32 --gpus-per-task 1 --cpus-per-task 8 \\
        --time 240 --folder work/slurm -- \\
        --coco-json $DETECTRON2_DATASETS/coco/annotations/instances_train2017.json \\
        --images $DETECTRON2_DATASETS/coco/train2017 --out work/train2017_zip.json
    python tools/submit_slurm.py train --nodes 2 --gpus-per-node 8 --folder work/slurm -- \\
        --config-file configs/coco/mask_rcnn_R50_FPN_1x.yaml OUTPUT_DIR output/coco
    python tools/submit_slurm.py self-train --nodes 1 --gpus-per-node 8 --folder work/slurm -- \\
        --config-file ... --labels ... --image-root ... --output-dir output/self_train --rounds 2

Everything after ``--`` goes to the tool itself (generate_pseudo_labels.py, train_net.py,
self_train.py); the launch flags (--num-gpus, --num-machines, --machine-rank, --dist-url) and
--shard come from the allocation. Prints one line per submitted job: its id, its logs, how to
follow and cancel it. With --wait, waits for the jobs and prints one line per task (DONE, or
FAILED with the error and the log), exit status 1 if any failed. Exit status 2: nothing was
submitted (the message says why). See README "On a SLURM cluster".
"""
try:
    import zip_d2.quiet  # noqa: F401  (first: silences known third-party noise at import)
except ModuleNotFoundError as e:  # not zip_d2's Python (e.g. the system one): say which
    raise SystemExit(f"error: {e}: run zip_d2's tools with its environment: `make setup`, "
                     "then `source .venv/bin/activate` (or .venv/bin/python tools/...)") from None

# isort: split
import argparse
import sys

from zip_d2.slurm import JOBS, SlurmError, SlurmOptions, job_lines, report_lines, wait


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("job", choices=sorted(JOBS), help="what to submit")
    p.add_argument("--folder", required=True,
                   help="submitit folder for the logs and job files (on a shared filesystem)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (train, self-train) [--nodes]")
    p.add_argument("--tasks", type=int, default=1, help="array tasks (label) [--array]")
    p.add_argument("--array-parallelism", type=int, default=256,
                   help="array tasks running at once (label) [--array=...%%N]")
    p.add_argument("--gpus-per-node", type=int, default=0,
                   help="GPUs per node (train, self-train) [--gpus-per-node]")
    p.add_argument("--processes-per-node", type=int, default=None,
                   help="training processes per node (default: --gpus-per-node, or 1; CPU "
                        "processes with MODEL.DEVICE cpu)")
    p.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per array task (label) "
                                                                "[--gpus-per-task]")
    p.add_argument("--cpus-per-task", type=int, default=None, help="[--cpus-per-task]")
    p.add_argument("--mem", default=None, help="memory per node, e.g. 64G [--mem]")
    p.add_argument("--time", type=int, default=60, help="time limit in minutes [--time]")
    p.add_argument("--partition", default=None, help="[--partition]")
    p.add_argument("--account", default=None, help="[--account]")
    p.add_argument("--qos", default=None, help="[--qos]")
    p.add_argument("--constraint", default=None, help="[--constraint]")
    p.add_argument("--job-name", default=None, help="[--job-name] (default zip_d2-JOB)")
    p.add_argument("--signal-delay", type=int, default=120,
                   help="seconds before the time limit at which the job checkpoints and "
                        "requeues itself [--signal=USR2@S]")
    p.add_argument("--max-timeouts", type=int, default=3,
                   help="requeues after reaching the time limit (preemptions do not count)")
    p.add_argument("--port", type=int, default=None,
                   help="rendezvous port on the first node (train, self-train; default "
                        "20000 + job id %% 20000)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the jobs and report each task's outcome")
    p.usage = "%(prog)s {label,train,self-train} [slurm flags] -- TOOL ARGUMENTS"
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        p.parse_args(argv)  # --help, or a misspelt flag: argparse's own message
        p.error("give the tool's own arguments after --")
    split = argv.index("--")
    args = p.parse_args(argv[:split])
    args.tool_args = argv[split + 1:]
    if not args.tool_args:
        p.error("give the tool's own arguments after --")
    return args


def main(argv=None):
    args = parse_args(argv)
    opts = SlurmOptions(folder=args.folder, nodes=args.nodes, tasks=args.tasks,
                        gpus_per_node=args.gpus_per_node,
                        processes_per_node=args.processes_per_node,
                        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                        mem=args.mem, time_min=args.time, partition=args.partition,
                        account=args.account, qos=args.qos, constraint=args.constraint,
                        array_parallelism=args.array_parallelism,
                        signal_delay_s=args.signal_delay, max_timeouts=args.max_timeouts,
                        port=args.port, job_name=args.job_name)
    from zip_d2 import slurm

    try:
        if args.job == "label":
            submitted = slurm.submit_label(opts, args.tool_args)
            jobs = [*submitted["array"], submitted["merge"]]
            lines = (job_lines("label array", submitted["array"])
                     + job_lines("merge job", [submitted["merge"]],
                                 after=f"array {submitted['array'][0].job_id.split('_')[0]}"))
        else:
            submit = slurm.submit_train if args.job == "train" else slurm.submit_self_train
            jobs = [submit(opts, args.tool_args)]
            lines = job_lines(f"{args.job} job", jobs)
    except SlurmError as e:
        print(f"submit_slurm: error: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(line, flush=True)
    if not args.wait:
        return 0
    wait(jobs)
    report = report_lines(jobs)
    for line in report:
        print(line)
    return 1 if any(" FAILED: " in line for line in report) else 0


if __name__ == "__main__":
    sys.exit(main())
