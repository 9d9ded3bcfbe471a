"""The pseudo-label job, training and self-training submitted to SLURM through ``submitit``.

Each SLURM task runs one of the project's own tools (``tools/*.py``) as a child process, so a
job does exactly what the same command does by hand, and writes its output and errors to one
log per task (``FOLDER/<job id>_<task>_log.out``). Three kinds of job:

- **label**: an array of N tasks; task ``i`` runs ``generate_pseudo_labels.py --shard i/N``
  (rank ``i`` of the job's sharding, without a process group). A merge job
  (``merge_pseudo_labels.py``) depends on the whole array (``afterany``): it runs once every
  task has ended and refuses to merge while any image is unfinished (a task that failed).
- **train**: one allocation of N nodes, one SLURM task per node; each starts detectron2's
  launcher (``train_net.py --num-gpus G --num-machines N --machine-rank i --dist-url ...``)
  with the rendezvous at the allocation's first node (``scontrol show hostnames``) and a port
  derived from the job id, so every node computes the same URL without talking to the others.
- **self-train**: the whole run in the same kind of allocation (``self_train.py``). Rounds are
  strictly sequential, each needs the previous round's model, and the run directory already
  records what is finished; one allocation is one queue wait, where one job per round would
  wait in the queue once per round and duplicate that bookkeeping in a chain of dependencies.

Preemption, a time limit or a node failure are normal events: every task is
``submitit.helpers.Checkpointable``. At the time-limit signal (SIGUSR2, ``signal_delay_s``
before the end) submitit requeues the job and the task starts again with the same command,
which resumes: labelling from the shards (content-addressed: nothing finished is labelled
again), training with ``--resume`` from the last checkpoint (always passed: without a
checkpoint it starts from MODEL.WEIGHTS), self-training from its run directory. A job that
SLURM itself requeues (preemption in REQUEUE mode, node failure) resumes the same way.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import submitit
from submitit.helpers import Checkpointable

__all__ = ["SlurmError", "SlurmOptions", "ToolFailed", "job_lines", "report_lines",
           "submit_label", "submit_train", "submit_self_train", "wait"]

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
JOBS = {"label": "generate_pseudo_labels.py", "train": "train_net.py",
        "self-train": "self_train.py"}
# How long a task whose tool was killed by a signal waits for SLURM's own verdict (the
# requeue signal after a preemption's SIGTERM, or the job's end) before reporting a failure.
KILLED_GRACE_S = 60
# Flags the submit tool sets from the allocation; given to the tool, they would contradict it.
_LAUNCH_FLAGS = ("--num-gpus", "--num-machines", "--machine-rank", "--dist-url")


class SlurmError(RuntimeError):
    """A submission that cannot be made; the message is one line for the user."""


class ToolFailed(RuntimeError):
    """A task's tool exited with an error; the message names the tool, status and last line."""


@dataclass
class SlurmOptions:
    """What to ask SLURM for (the ``sbatch`` flag each maps to, via submitit, in brackets).

    folder: submitit folder: the logs (``<job id>_<task>_log.out``) and job pickles.
    nodes: nodes of one allocation (train, self-train) [--nodes].
    tasks: array tasks (label) [--array=0-(N-1)%parallel].
    gpus_per_node: GPUs per node; training starts one process per GPU [--gpus-per-node].
    processes_per_node: training processes per node (default: gpus_per_node, or 1); on
        CPU-only nodes with MODEL.DEVICE cpu, the number of CPU processes.
    gpus_per_task: GPUs per array task (label) [--gpus-per-task].
    """

    folder: str
    nodes: int = 1
    tasks: int = 1
    gpus_per_node: int = 0
    processes_per_node: Optional[int] = None
    gpus_per_task: int = 0
    # SLURM tasks per node in train and self-train, each one detectron2 "machine" with
    # processes_per_node processes; 1 but in tests, where two tasks on one node stand for two
    # nodes [--ntasks-per-node].
    tasks_per_node: int = 1
    cpus_per_task: Optional[int] = None  # [--cpus-per-task]
    mem: Optional[str] = None  # per node, e.g. 64G [--mem]
    time_min: int = 60  # [--time]
    partition: Optional[str] = None  # [--partition]
    account: Optional[str] = None  # [--account]
    qos: Optional[str] = None  # [--qos]
    constraint: Optional[str] = None  # [--constraint]
    array_parallelism: int = 256  # array tasks running at once [--array=...%N]
    # The time-limit warning: seconds before the end [--signal=USR2@S]; one checkpoint period
    # of training should fit in it.
    signal_delay_s: int = 120
    max_timeouts: int = 3  # requeues after a time limit (preemptions do not count)
    port: Optional[int] = None  # rendezvous port (train, self-train); default from the job id
    job_name: Optional[str] = None  # [--job-name]

    def check(self) -> None:
        for name in ("nodes", "tasks", "tasks_per_node", "time_min", "array_parallelism",
                     "signal_delay_s"):
            if getattr(self, name) < 1:
                raise SlurmError(f"--{name.replace('_', '-')} must be at least 1, "
                                 f"got {getattr(self, name)}")
        for name in ("gpus_per_node", "gpus_per_task", "max_timeouts"):
            if getattr(self, name) < 0:
                raise SlurmError(f"--{name.replace('_', '-')} must be >= 0")
        if self.processes_per_node is not None and self.processes_per_node < 1:
            raise SlurmError("--processes-per-node must be at least 1")
        if self.port is not None and not 1024 <= self.port < 65536:
            raise SlurmError(f"--port must be in [1024, 65536), got {self.port}")

    @property
    def launch_processes(self) -> int:
        return self.processes_per_node or self.gpus_per_node or 1


def _run_tool(tool: str, args: Sequence[str]) -> int:
    """Run ``tools/<tool> args`` in a child process whose output goes to this task's log.

    The child ignores SIGUSR2: that is submitit's time-limit signal, handled in this process
    (checkpoint, requeue, exit). Raises ToolFailed when the tool fails.
    """
    cmd = [sys.executable, os.path.join(TOOLS, tool), *args]
    print(f"zip_d2.slurm: running {shlex.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace",
                            preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
    last = []

    def copy_stderr():  # to the log as it comes, keeping the last line for the report
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                last[:] = [line.strip()]

    copier = threading.Thread(target=copy_stderr, daemon=True)
    copier.start()
    returncode = proc.wait()
    copier.join()
    if returncode < 0:
        # Killed by a signal: SLURM stopping the job (a preemption's SIGTERM comes before the
        # requeue signal, which this process handles) or the kernel (out of memory). Wait for
        # SLURM's verdict rather than record a failure that a requeue would contradict.
        print(f"zip_d2.slurm: {tool} was killed by signal {-returncode}; waiting up to "
              f"{KILLED_GRACE_S} s for SLURM to requeue or end the job", flush=True)
        time.sleep(KILLED_GRACE_S)
        raise ToolFailed(f"{tool} was killed by signal {signal.Signals(-returncode).name} "
                         "(out of memory?)")
    if returncode:
        raise ToolFailed(f"{tool} exited with status {returncode}"
                         + (f": {last[0]}" if last else ""))
    return returncode


class LabelTask(Checkpointable):
    """One array task of the pseudo-label job: rank ``rank`` of ``world_size``."""

    def __init__(self, args: Sequence[str]):
        self.args = list(args)

    def __call__(self, rank: int, world_size: int) -> int:
        return _run_tool(JOBS["label"], [*self.args, "--shard", f"{rank}/{world_size}",
                                         "--no-progress"])


class MergeTask(Checkpointable):
    """Merges the label array's shards into OUT, once every task has ended."""

    def __init__(self, out: str):
        self.out = out

    def __call__(self) -> int:
        return _run_tool("merge_pseudo_labels.py", ["--out", self.out])


def rendezvous(port: Optional[int] = None) -> str:
    """``tcp://FIRST_NODE:PORT`` for this allocation, the same on every node.

    The first node of SLURM_JOB_NODELIST (expanded by ``scontrol show hostnames``); the port
    is ``port`` or 20000 + job id % 20000, so a requeued job (same id) uses the same one.
    """
    nodelist = os.environ["SLURM_JOB_NODELIST"]
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                           text=True, check=True).stdout.split()
    job_id = int(os.environ["SLURM_JOB_ID"])
    return f"tcp://{hosts[0]}:{port or 20000 + job_id % 20000}"


class LaunchTask(Checkpointable):
    """One node's share of a training or self-training allocation: detectron2's launcher with
    ``processes`` processes, machine rank = this SLURM task's rank."""

    def __init__(self, tool: str, args: Sequence[str], processes: int, port: Optional[int]):
        self.tool, self.args, self.processes, self.port = tool, list(args), processes, port

    def __call__(self) -> int:
        launch = ["--num-gpus", str(self.processes),
                  "--num-machines", os.environ["SLURM_NTASKS"],
                  "--machine-rank", os.environ["SLURM_PROCID"],
                  "--dist-url", rendezvous(self.port)]
        # train_net resumes only when asked; self_train always resumes its run directory.
        resume = ["--resume"] if self.tool == JOBS["train"] else []
        return _run_tool(self.tool, [*launch, *resume, *self.args])


def _executor(opts: SlurmOptions, name: str, **extra) -> submitit.SlurmExecutor:
    opts.check()
    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch not found: submit from a SLURM login node (or start a test "
                         "cluster with tools/slurm/local_cluster.sh)")
    os.makedirs(opts.folder, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=opts.folder, max_num_timeout=opts.max_timeouts)
    params = dict(job_name=opts.job_name or f"zip_d2-{name}", time=opts.time_min,
                  signal_delay_s=opts.signal_delay_s, stderr_to_stdout=True,
                  partition=opts.partition, account=opts.account, qos=opts.qos,
                  constraint=opts.constraint, cpus_per_task=opts.cpus_per_task, mem=opts.mem,
                  # Preempted or failed nodes: let SLURM requeue the job too.
                  additional_parameters={"requeue": True})
    params.update(extra)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _refuse_flags(args: Sequence[str], flags: Sequence[str], why: str) -> None:
    for arg in args:
        if arg.split("=")[0] in flags:
            raise SlurmError(f"{arg.split('=')[0]} in the tool's arguments: {why}")


def _label_out(args: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out")
    known, _ = parser.parse_known_args(args)
    if not known.out:
        raise SlurmError("the label job needs --out OUT.json among the tool's arguments")
    return known.out


def submit_label(opts: SlurmOptions, args: Sequence[str]) -> Dict[str, object]:
    """Submit the pseudo-label job as an array of ``opts.tasks`` tasks and its merge job.

    ``args``: generate_pseudo_labels.py's own arguments (--out must be on a filesystem every
    node sees). Returns {"array": [Job per task], "merge": Job}.
    """
    _refuse_flags(args, ("--shard",), "the array task's rank sets it")
    _refuse_flags(args, ("--overwrite",), "the array tasks would delete each other's shards; "
                  "delete OUT.shards (and OUT) to start over")
    out = os.path.abspath(_label_out(args))
    executor = _executor(opts, "label", ntasks_per_node=1,
                         gpus_per_task=opts.gpus_per_task or None,
                         array_parallelism=opts.array_parallelism)
    task = LabelTask(args)
    array = executor.map_array(task, range(opts.tasks), [opts.tasks] * opts.tasks)
    array_id = array[0].job_id.split("_")[0]
    merge_exec = _executor(opts, "label-merge", ntasks_per_node=1,
                           dependency=f"afterany:{array_id}", time=min(opts.time_min, 60))
    merge = merge_exec.submit(MergeTask(out))
    return {"array": array, "merge": merge}


def _submit_launch(opts: SlurmOptions, job: str, args: Sequence[str]):
    _refuse_flags(args, _LAUNCH_FLAGS, "the allocation sets it (use --nodes, --gpus-per-node, "
                  "--processes-per-node, --port)")
    executor = _executor(opts, job, nodes=opts.nodes, ntasks_per_node=opts.tasks_per_node,
                         gpus_per_node=opts.gpus_per_node or None)
    return executor.submit(LaunchTask(JOBS[job], args, opts.launch_processes, opts.port))


def submit_train(opts: SlurmOptions, args: Sequence[str]):
    """Submit train_net.py (its own ``args``) on ``opts.nodes`` nodes x processes per node."""
    return _submit_launch(opts, "train", args)


def submit_self_train(opts: SlurmOptions, args: Sequence[str]):
    """Submit the whole self_train.py run (its own ``args``) in one allocation."""
    return _submit_launch(opts, "self-train", args)


def _base_id(job) -> str:
    return job.job_id.split("_")[0]


def job_lines(what: str, jobs: Sequence, after: Optional[str] = None) -> List[str]:
    """One line for a submitted job (an array counts as one): its id, where its logs go, how to
    follow and cancel it."""
    first = jobs[0]
    job_id = _base_id(first)
    log = str(first.paths.stdout)
    if len(jobs) > 1:  # FOLDER/12_3_0_log.out -> FOLDER/12_<task>_0_log.out
        log = log.replace(f"{job_id}_{first.job_id.split('_')[1]}_", f"{job_id}_<task>_")
    return [f"submitted {what} {job_id}" + (f" ({len(jobs)} tasks)" if len(jobs) > 1 else "")
            + (f", starts after {after} ends" if after else "")
            + f"; log {log}; progress: squeue -j {job_id}, sacct -j {job_id}; "
            f"cancel: scancel {job_id}"]


def wait(jobs: Sequence, poll_s: float = 1.0, timeout_s: Optional[float] = None) -> None:
    """Block until every job has ended (SLURM's state, or its result file)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    pending = list(jobs)
    while pending:
        pending = [j for j in pending if not j.done()]
        if pending and deadline is not None and time.time() > deadline:
            raise TimeoutError(f"jobs {', '.join(j.job_id for j in pending)} still running "
                               f"after {timeout_s} s")
        if pending:
            time.sleep(poll_s)


def _failure(job) -> Optional[str]:
    """None if the job succeeded, else its error in one line."""
    error = job.exception()
    if error is None:
        return None
    text = str(error)
    for line in reversed(text.splitlines()):
        if line.startswith(f"{ToolFailed.__module__}.{ToolFailed.__name__}: "):
            return line.split(": ", 1)[1]
    # Not our tool's error: a cancelled, out-of-memory or node-failed job (SLURM's state).
    return f"{job.state}: {text.splitlines()[0]}" if text else job.state


def report_lines(jobs: Sequence) -> List[str]:
    """One line per ended job (per array task, per node task): DONE or FAILED with the error,
    and the log to read."""
    lines = []
    for job in jobs:
        tasks = [job.task(i) for i in range(job.num_tasks)] if job.num_tasks > 1 else [job]
        for task in tasks:
            failure = _failure(task)
            name = job.job_id + (f" task {task.task_id}" if job.num_tasks > 1 else "")
            state = "DONE" if failure is None else f"FAILED: {failure}"
            lines.append(f"job {name} {state}; log {task.paths.stdout}")
    return lines
