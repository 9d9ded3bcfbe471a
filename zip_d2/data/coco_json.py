"""Reading and writing the project's JSON files (COCO datasets, pseudo-labels, manifests).

One reader that turns every way a file can be unusable into a one-line error, and one writer
that never leaves a half-written file under the final name, nor a temporary file behind.
"""
import json
import os
import tempfile

# Per-annotation keys beyond detectron2's defaults that reach the dataset dicts: pseudo-label
# JSON carries a confidence "score" that training can use to weight the loss.
EXTRA_ANNOTATION_KEYS = ["score"]


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is one line naming the file and the problem."""


def unset_datasets_hint(path):
    """A hint for a missing ``path`` that an unset ``$DETECTRON2_DATASETS`` made: the README's
    ``$DETECTRON2_DATASETS/coco/...`` becomes ``/coco/...``. "" otherwise."""
    first = str(path).lstrip("/").split("/", 1)[0]
    if (os.environ.get("DETECTRON2_DATASETS") or not str(path).startswith("/")
            or first not in ("coco", "lvis") or os.path.exists(f"/{first}")):
        return ""
    return ("; $DETECTRON2_DATASETS is not set, so $DETECTRON2_DATASETS/coco/... became "
            "/coco/...: export DETECTRON2_DATASETS=/path/to/datasets (see datasets/README.md)")


def load_json(path):
    """Read a JSON file, turning every way it can be unusable into a one-line DatasetError."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: JSON file not found{unset_datasets_hint(path)}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (another thread
    creating a file meanwhile would otherwise get a wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(data, path, indent=None, sort_keys=False, before_replace=None):
    """Write ``data`` as JSON so that ``path`` is never seen half-written.

    The bytes go to a temporary file in the same folder (created if missing), are forced to
    disk, and replace ``path`` in one rename. On any failure (disk full, a value JSON cannot
    encode, an interrupt) the temporary file is removed and ``path`` keeps its old content.
    ``before_replace(tmp_path)``, if given, runs once the temporary file is complete and before
    the rename (e.g. to record what is about to be written); if it raises, nothing is replaced.
    The file gets the mode a plain ``open(path, "w")`` would give it (0666 less the umask), not
    the temporary file's private 0600.
    """
    def write(f):
        json.dump(data, f, indent=indent, sort_keys=sort_keys,
                  separators=None if indent is not None else (",", ":"))

    write_atomic(path, write, before_replace)


def write_atomic(path, write, before_replace=None):
    """Call ``write(f)`` on a text file that replaces ``path`` in one rename once complete
    (the guarantees of :func:`write_json_atomic`, for a writer that streams its content)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
