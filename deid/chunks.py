"""Pieces of an output written without being held: bytes still in an input file, or a
value made as it is written (pixel data rewritten a frame at a time).

A DICOM output is a list of chunks (`deid.output.Serialized`): bytes for the header and
a `Source` for a large value, which knows its length before a byte of it is written, so
the header can be made and checked first.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, NoReturn, Protocol, runtime_checkable

from deid.errors import UnreadableError

__all__ = ["Chunk", "FileRange", "Source", "Spill", "Spilled"]


@dataclass(frozen=True)
class FileRange:
    """Bytes still in an input file: a pixel data value that was never read.

    `mtime` is the file's modification time when its header was read; a file changed
    since then is refused rather than copied.
    """

    path: str
    offset: int
    length: int
    mtime: float | None = None

    def read(self) -> bytes:
        with self._source() as source:
            data = os.pread(source, self.length, self.offset)
        self._whole(len(data))
        return data

    def copy_to(self, out: BinaryIO) -> None:
        """Append the range to `out`, kernel to kernel where the system allows."""
        out.flush()
        done = 0
        with self._source() as source:
            while done < self.length:
                try:
                    step = os.copy_file_range(
                        source, out.fileno(), self.length - done, self.offset + done
                    )
                except (AttributeError, OSError):  # no kernel copy here: read and write
                    step = out.write(os.pread(source, self.length - done, self.offset + done))
                    out.flush()
                if step <= 0:
                    break
                done += step
        self._whole(done)
        out.seek(0, os.SEEK_END)

    @contextmanager
    def _source(self) -> Iterator[int]:
        """The input, open, once it is known to be the file that was read."""
        source = os.open(self.path, os.O_RDONLY)
        try:
            if self.mtime is not None and os.fstat(source).st_mtime != self.mtime:
                self._refuse()
            yield source
        finally:
            os.close(source)

    def _whole(self, count: int) -> None:
        if count != self.length:
            self._refuse()

    def _refuse(self) -> NoReturn:
        raise UnreadableError("the file changed while it was read; nothing written", self.path)


@runtime_checkable
class Source(Protocol):
    """A value written in pieces rather than held: `FileRange`, or pixel data made a frame
    at a time (`deid.pixels.stream`). `length` is known before a byte is written."""

    @property
    def length(self) -> int: ...

    def read(self) -> bytes: ...

    def copy_to(self, out: BinaryIO) -> None: ...


Chunk = bytes | Source


class Spill:
    """One unnamed temporary file that bytes made early are kept in until written (the
    PNGs of a long cine, made before their names are known): memory holds none of them,
    and the whole set costs one file descriptor."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="deid-")  # noqa: SIM115 - closed below
        self._end = 0
        weakref.finalize(self, self._file.close)

    def keep(self, data: bytes) -> Spilled:
        self._file.seek(self._end)
        self._file.write(data)
        self._file.flush()
        spilled = Spilled(self, self._end, len(data))
        self._end += len(data)
        return spilled

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)


@dataclass(frozen=True)
class Spilled:
    """Bytes kept in a `Spill`, written from there."""

    spill: Spill
    offset: int
    length: int

    def read(self) -> bytes:
        return self.spill.pread(self.length, self.offset)

    def copy_to(self, out: BinaryIO) -> None:
        done = 0
        while done < self.length:
            piece = self.spill.pread(min(self.length - done, 1 << 20), self.offset + done)
            if not piece:
                raise OSError("the temporary copy of an output was cut short")
            out.write(piece)
            done += len(piece)
