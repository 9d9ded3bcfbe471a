"""Weights & Biases event writer: the scalars Detectron2 writes to metrics.json, also to W&B."""
import os

from detectron2.utils.events import EventWriter, get_event_storage


class WandbWriter(EventWriter):
    """Logs every new scalar in the event storage to a W&B run.

    ``mode="offline"`` needs no account or network: the run is kept under
    ``<output_dir>/wandb`` and can be uploaded later with ``wandb sync``.
    """

    def __init__(self, project, output_dir, config=None, entity="", name="", mode="offline",
                 window_size=20):
        import wandb  # imported here so that training without W&B never needs it

        self._window_size = window_size
        self._last_write = -1
        os.makedirs(output_dir, exist_ok=True)
        self._run = wandb.init(project=project, entity=entity or None,
                               name=name or os.path.basename(os.path.normpath(output_dir)),
                               mode=mode, dir=output_dir, config=config,
                               # a run left open in this process (an interrupted round) ends first
                               reinit="finish_previous")

    def write(self):
        storage = get_event_storage()
        by_iter = {}
        for key, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                by_iter.setdefault(itr, {})[key] = value
        for itr in sorted(by_iter):
            self._run.log(by_iter[itr], step=itr)
        if by_iter:
            self._last_write = max(by_iter)

    def close(self):
        self._run.finish()
