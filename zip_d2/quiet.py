"""The third-party messages known to be noise for zip_d2's users, silenced in one place.

Every tool imports this module before anything else (``import zip_d2.quiet  # noqa: F401``):
some of the noise is printed while torch, fvcore and detectron2 are being imported. Each filter
matches one known message from one library, about that library's own code, which a user can do
nothing about; every other warning still shows. The library itself changes no global state on
import: only the tools opt in.
"""
import importlib.util
import logging
import re
import warnings

__all__ = ["KNOWN_NOISE"]

# The tools' first import is this module, and each catches ModuleNotFoundError around it to say
# which Python to use: a Python that finds zip_d2 (PYTHONPATH) but not its environment's
# packages is told here, before a traceback from deep inside an import could.
for _package in ("torch", "detectron2"):
    if importlib.util.find_spec(_package) is None:
        raise ModuleNotFoundError(f"No module named {_package!r}", name=_package)

# (category, message regex). Warnings are matched on their message, so a library moving the
# call elsewhere keeps it silenced; each pattern is specific enough that nothing else matches.
KNOWN_NOISE = (
    # fvcore (imported by detectron2) applies torch.jit.script to its losses at import time;
    # recent torch deprecates torch.jit.script, once per scripted function.
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    # detectron2's anchor generator calls torch.meshgrid without indexing= (it relies on the
    # "ij" default that torch keeps).
    (UserWarning, r"torch\.meshgrid: in an upcoming release, it will be required"),
    # detectron2's detection_utils builds mask tensors from read-only numpy views, which it
    # never writes to.
    (UserWarning, r"The given NumPy array is not writable"),
)

for category, pattern in KNOWN_NOISE:
    warnings.filterwarnings("ignore", message=pattern, category=category)


class _DropMessage(logging.Filter):
    """Drops the records of one logger whose message matches ``pattern``."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record):
        return not self.pattern.search(record.getMessage())


# torch.fx warns once per process, through its logger, that detectron2's is_fx_tracing() check
# (in RoI pooling) cannot tell fx tracing from torch.export; zip_d2 does neither.
logging.getLogger("torch.fx._symbolic_trace").addFilter(
    _DropMessage(r"^is_fx_tracing will return true for both"))

# huggingface_hub gives its loggers their own stderr handler and lets records propagate too, so
# under a tool that configures the root logger (generate_pseudo_labels) each of its messages
# (download retries, for instance) printed twice. Its own handler is enough.
logging.getLogger("huggingface_hub").propagate = False
