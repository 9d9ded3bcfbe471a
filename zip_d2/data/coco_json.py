"""Reading and writing the project's JSON files (COCO datasets, pseudo-labels, manifests).

One reader that turns every way a file can be unusable into a one-line error, and one writer
that never leaves a half-written file under the final name, nor a temporary file behind.
"""
import json
import os
import tempfile


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is one line naming the file and the problem."""


def load_json(path):
    """Read a JSON file, turning every way it can be unusable into a one-line DatasetError."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: JSON file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None


def write_json_atomic(data, path, indent=None, sort_keys=False, before_replace=None):
    """Write ``data`` as JSON so that ``path`` is never seen half-written.

    The bytes go to a temporary file in the same folder (created if missing), are forced to
    disk, and replace ``path`` in one rename. On any failure (disk full, a value JSON cannot
    encode, an interrupt) the temporary file is removed and ``path`` keeps its old content.
    ``before_replace(tmp_path)``, if given, runs once the temporary file is complete and before
    the rename (e.g. to record what is about to be written); if it raises, nothing is replaced.
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
