"""The job's writer thread: detections become shard records off the main (GPU) thread.

Mask upscaling and RLE encoding (``coco_output``) and the shard append run here, so CPU
post-processing of one batch overlaps the labeler's work on the next.
"""
import logging
import queue
import threading
import time
from typing import Optional

from . import shards
from .coco_output import detections_to_annotations
from .images import ImageEntry

logger = logging.getLogger(__name__)


def _record_base(entry: ImageEntry, info: dict, run: int) -> dict:
    base = {"file_name": entry.file_name, "run": run}
    if entry.image_id is not None:
        base["id"] = entry.image_id
    if info.get("fingerprint") is not None:
        base["fingerprint"] = info["fingerprint"]
    return base


class RecordWriter(threading.Thread):
    """Turns detections into shard records and appends them, off the main (GPU) thread."""

    def __init__(self, writer: shards.ShardWriter, category_ids, result, bar, run: int):
        """writer: this rank's shard. category_ids: {name: COCO id}. result: the rank's
        JobResult, whose counters and post/write seconds this thread adds to. bar: tqdm or None.
        run: the job's run number, recorded in every record.
        """
        super().__init__(daemon=True, name="pseudo-label-writer")
        self.writer, self.category_ids, self.result, self.bar = writer, category_ids, result, bar
        self.run_number = run
        self.queue = queue.Queue(maxsize=16)
        self.error: Optional[BaseException] = None

    def run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                self._handle(*item)
            except BaseException as e:  # re-raised in the main thread by check()
                self.error = e
                return

    def _handle(self, entry, info, detections):
        start = time.perf_counter()
        record = _record_base(entry, info, self.run_number)
        if "skipped" in info:
            record["skipped"] = info["skipped"]
        else:
            try:
                anns, _ = detections_to_annotations(detections, info["work_shape"],
                                                    info["width"], info["height"],
                                                    self.category_ids)
            except ValueError as e:
                record["skipped"] = f"bad labeler output: {e}"
            else:
                record.update(width=info["width"], height=info["height"], annotations=anns)
        mid = time.perf_counter()
        self.writer.write(record)
        end = time.perf_counter()
        self.result.post_s += mid - start
        self.result.write_s += end - mid
        if "skipped" in record:
            self.result.images_skipped += 1
            logger.info("skipped %s: %s", entry.file_name, record["skipped"])
        else:
            self.result.images_labeled += 1
            self.result.annotations += len(record["annotations"])
        if self.bar is not None:
            self.bar.update(1)

    def put(self, entry, info, detections=None):
        """entry: the ImageEntry. info: {"skipped": reason} or {"work_shape", "width",
        "height"}, with the file's "fingerprint" (None when it could not be read)."""
        self._put((entry, info, detections))

    def _put(self, item):
        # A writer that died (disk full...) stops draining the queue: never block on it.
        while True:
            self.check()
            try:
                self.queue.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def check(self):
        if self.error is not None:
            raise self.error

    def finish(self):
        if self.is_alive():
            self._put(None)
            self.join()
        self.check()
