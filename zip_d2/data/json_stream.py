"""Reading a large JSON object one list element at a time (COCO files of millions of records).

``iter_object(path)`` yields the top-level object's ``(key, value)`` pairs in file order; a
list value comes as an iterator over its elements, each parsed by the standard library's C
decoder (``json.JSONDecoder.raw_decode``) from a sliding buffer, so memory holds one element
and one read block, whatever the file's size or layout (any whitespace, any key order). Every
other value is parsed whole. A list iterator not consumed is skipped before the next key.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Tuple

from .coco_json import DatasetError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
_DECODER = json.JSONDecoder()


class _Stream:
    def __init__(self, f, path, chunk):
        self.f, self.path, self.chunk = f, path, chunk
        self.buf, self.pos, self.eof, self.consumed = "", 0, False, 0

    def _more(self) -> bool:
        data = self.f.read(self.chunk)
        if not data:
            self.eof = True
            return False
        self.consumed += self.pos
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def error(self, what) -> DatasetError:
        return DatasetError(f"{self.path}: not valid JSON ({what} near character "
                            f"{self.consumed + self.pos})")

    def peek(self) -> str:
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def expect(self, chars: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise self.error(f"expected {' or '.join(repr(x) for x in chars)}")
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self._more():  # the value may continue in the next block
                    continue
                raise self.error(e.msg) from None
            # a number that reaches the end of the block may go on in the next one ("-0" of
            # "-0.5"); every other value ends with a character of its own
            if (isinstance(obj, (int, float)) and not self.eof
                    and _NUMBER_TAIL.fullmatch(self.buf, end) and self._more()):
                continue
            self.pos = end
            return obj

    def elements(self) -> Iterator[Any]:
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.expect(",]") == "]":
                return


def iter_object(path: str, chunk: int = 1 << 20) -> Iterator[Tuple[str, Any]]:
    """(key, value) of the top-level JSON object at ``path``; list values as iterators.

    Raises DatasetError (one line) for a file that is not a JSON object or not valid JSON."""
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: JSON file not found") from None
    with f:
        s = _Stream(f, path, chunk)
        try:
            if s.peek() != "{":
                raise DatasetError(f"{path}: top level is not a JSON object")
            s.pos += 1
            if s.peek() == "}":
                return
            while True:
                key = s.value()
                if not isinstance(key, str):
                    raise s.error("expected a key")
                s.expect(":")
                if s.peek() == "[":
                    items = s.elements()
                    yield key, items
                    for _ in items:  # what the caller did not read
                        pass
                else:
                    yield key, s.value()
                if s.expect(",}") == "}":
                    return
        except UnicodeDecodeError as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from None


def read_categories(path: str) -> list:
    """The ``categories`` list of a COCO JSON file, reading no further than it (a pseudo-label
    file holds it near the start; other files are streamed up to it). [] when it has none."""
    pairs = iter_object(path)
    try:
        for key, value in pairs:
            if key == "categories":
                return list(value) if isinstance(value, Iterator) else value
        return []
    finally:
        pairs.close()
