"""What a self-training run tells its user: a per-round log file and a closing table.

The summary JSON (``self_train.json``) keeps every number as written by the rounds, except that
a value that is not a number (an AP of NaN: no ground truth of that size) is ``null``; the table
prints it as "n/a". A round's ``log.txt`` holds the detectron2 and zip_d2 log records of that
round only, in detectron2's log.txt format.
"""
import contextlib
import logging
import math
import os

from tabulate import tabulate

from detectron2.utils import comm

__all__ = ["round_log_file", "without_nan", "summary_table"]

# detectron2's own log.txt line format (detectron2.utils.logger.setup_logger).
_LOG_FORMAT = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s",
                                datefmt="%m/%d %H:%M:%S")
_LOGGERS = ("detectron2", "fvcore", "zip_d2")


@contextlib.contextmanager
def round_log_file(folder):
    """While inside, also write the records of detectron2's, fvcore's and zip_d2's loggers to
    ``folder/log.txt`` (``log.txt.rank<r>`` on the other processes, as detectron2 names them),
    appending, so a resumed round keeps its earlier log."""
    os.makedirs(folder, exist_ok=True)
    rank = comm.get_rank()
    name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
    handler = logging.FileHandler(os.path.join(folder, name), encoding="utf-8")
    handler.setFormatter(_LOG_FORMAT)
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def without_nan(value):
    """``value`` with every float that is NaN or infinite replaced by None (JSON null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def _number(value, digits=1):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_table(summary, output_dir):
    """The closing table of a run: one row per round with the labels it trained on, how they
    came from the previous round's (old labels kept / replaced, predictions added), box and
    mask AP on the evaluation set when one is registered ("n/a" otherwise), and its checkpoint
    (relative to ``output_dir`` when inside it)."""
    rows = []
    rounds = summary.get("round_info", {})
    for k in sorted(rounds, key=int):
        info = rounds[k]
        evaluated = info.get("eval") or {}
        checkpoint = info.get("checkpoint", "")
        if checkpoint.startswith(os.path.join(output_dir, "")):
            checkpoint = os.path.relpath(checkpoint, output_dir)
        if k == "0":
            merged = ["-", "-", "-"]
        else:
            merged = [_number(info.get(key)) for key in ("old_kept", "old_replaced",
                                                          "predictions_added")]
        labels = info.get("num_annotations") if info.get("trained_here", True) else "-"
        rows.append([k, _number(labels), *merged,
                     _number(evaluated.get("bbox", {}).get("AP")),
                     _number(evaluated.get("segm", {}).get("AP")),
                     checkpoint + ("" if info.get("trained_here", True) else " (given)")])
    headers = ["round", "labels in", "old kept", "old replaced", "predictions added", "box AP",
               "mask AP", "checkpoint"]
    table = tabulate(rows, headers=headers, tablefmt="pipe", stralign="right",
                     disable_numparse=True)
    return f"self-training run {output_dir}\n{table}"
