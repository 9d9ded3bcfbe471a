"""The one rule every tool that writes obeys: never write over a file it reads.

With or without ``--overwrite``: that flag lets a tool replace an earlier output, never one of
its own inputs (an image, a label file, a vocabulary, weights).
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping, Tuple, Union

from .coco_json import DatasetError

Named = Union[Mapping[str, str], Iterable[Tuple[str, str]]]


class OverwriteError(DatasetError):
    """An output of a tool is one of its inputs; the message is one line."""


def _pairs(named: Named):
    items = named.items() if isinstance(named, Mapping) else named
    return [(what, os.fspath(path)) for what, path in items if path]


def _identity(path: str):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_overwriting_inputs(outputs: Named, inputs: Named, output_dirs: Named = ()) -> None:
    """Raise OverwriteError if writing ``outputs`` would write over one of ``inputs``.

    outputs: ``{flag: path}`` (or ``(flag, path)`` pairs) of every file the tool will write,
        existing or not; a tool that writes files into a folder lists the files it will write
        there, so an input of another name in that folder is fine.
    inputs: ``{what: path}`` of every file the tool reads.
    output_dirs: folders the tool owns as a whole (it may write any name in them, or clear
        them): an input anywhere inside one is refused.

    Files are compared by identity (device and inode, so a symlink or hard link to an input
    counts); an output that does not exist yet cannot hide an input, so a tool whose outputs
    are all new pays one ``stat`` per output and nothing per input. Empty paths are ignored.
    """
    existing = {}
    for flag, path in _pairs(outputs):
        identity = _identity(path)
        if identity is not None:
            existing.setdefault(identity, (flag, path))
    dirs = [(flag, path, os.path.realpath(path)) for flag, path in _pairs(output_dirs)]
    if not existing and not dirs:
        return
    for what, path in _pairs(inputs):
        clash = existing.get(_identity(path)) if existing else None
        if clash is not None:
            flag, out = clash
            raise OverwriteError(f"{flag} {out} is an input of this command ({what} {path}); "
                                 f"choose another {flag}")
        real = os.path.realpath(path) if dirs else None
        for flag, folder, real_dir in dirs:
            if _inside(real, real_dir):
                raise OverwriteError(f"{flag} {folder} holds an input of this command ({what} "
                                     f"{path}); choose another {flag} or move the input out")
