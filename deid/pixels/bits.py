"""Bits above Bits Stored: found in the stored cells, cleared before a DICOM output.

A pixel cell is Bits Allocated wide and its value only Bits Stored wide. The rest of the
cell has carried retired overlay planes (Overlay Bit Position above the High Bit: a
burned-in name or annotation), vendor flags and plain garbage. A viewer that masks to
Bits Stored shows none of it, so removing the overlay attributes looks like enough; but
the bits travel with the file, and a viewer that knows the old convention, or anyone
masking bits, reads them. So a DICOM output holds only values in the declared range:
masked for unsigned data, sign-extended from the High Bit for signed data (PS3.5 8.1.1),
which is the same value every reader takes, whether it masks, extends or reads the cell
whole.

Native data is checked on its stored bytes with numpy, a piece at a time, straight from
the input file when the value was left there, so a clean file is still copied as it is.

Compressed data is checked on its decoded values, unmasked, a frame at a time. No codec
here is bound to Bits Stored: RLE keeps every bit of a cell, and JPEG lossless, JPEG-LS
and JPEG 2000 keep as many bits as their codestream declares, which can be all of Bits
Allocated; so a name in bit 12 comes back from any of them. Data that holds such a bit
is written native with its values masked (`deid.stages`); data that holds none keeps its
codestream. Nothing is decoded where no such bit can exist: Bits Stored equal to Bits
Allocated (every conformant 8-bit file, JPEG baseline among them) or 1-bit data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from deid.errors import UnreadableError
from deid.pixels.frames import (
    Array,
    Geometry,
    check_pixel_data,
    image_geometry,
    is_compressed,
    representable_range,
    transfer_syntax,
)
from deid.pixels.framewise import Frames, _InFile
from deid.reader import PIXEL_DATA, deferred, pixel_length

__all__ = [
    "Cleaned",
    "clear_unused_bits",
    "encoded_bits_set",
    "unused_bit_frames",
    "unused_bits_set",
]

_PIECE = 16 * 1024 * 1024  # bytes of whole frames read and checked at a time
Reader = Callable[[int, int], bytes | memoryview]


@dataclass(frozen=True)
class _Cells:
    """How native pixel data is laid out: cell type in the data's byte order, frames."""

    dtype: np.dtype[Any]
    syntax: UID
    bits_stored: int
    frame_bytes: int
    frames: int


def clear_unused_bits(ds: Dataset, path: str) -> bool:
    """Clear the bits above Bits Stored in native pixel data; True if any was set.

    Only when some cell holds a value outside the declared range is the pixel data
    replaced (same transfer syntax, length and attributes): by a `Cleaned` value, read,
    cleared and written a piece at a time, when it is still in a little-endian input
    file; else read whole. Otherwise `ds` is left untouched, and pixel data still in
    the input file stays there to be copied as it is. Bytes after the last frame
    (padding) are kept; a dataset without pixel data has nothing to clear.

    Compressed data is left alone here: clearing it means decoding it and storing it
    uncompressed, which `encoded_bits_set` decides and the pixel rewrite does.
    """
    cells = _dirty_cells(ds, path)
    if cells is None:
        return False
    uid = cells.syntax
    elem = ds._dict.get(PIXEL_DATA)  # type: ignore[call-overload]
    filename = getattr(ds, "filename", None)
    if (
        deferred(elem)
        and isinstance(filename, str)
        and uid.is_little_endian
        and not uid.is_deflated
        and not elem.length % 2
    ):
        where = _InFile(filename, elem.value_tell, getattr(ds, "timestamp", None))
        later = Cleaned(cells, where, int(elem.length), path)
        vr = elem.VR if elem.VR in ("OB", "OW") else ("OB" if cells.dtype.itemsize == 1 else "OW")
        ds[PIXEL_DATA] = DataElement(PIXEL_DATA, vr, later, validation_mode=config.IGNORE)
        return True
    with _source(ds, uid, path) as (read, total):
        data = read(0, total)
    length = cells.frames * cells.frame_bytes
    values = np.frombuffer(data, dtype=cells.dtype, count=length // cells.dtype.itemsize)
    cleaned = _in_range(values, cells.bits_stored).astype(cells.dtype, copy=False).tobytes()
    cleaned += bytes(data[length:])
    vr = ds.get_item(PIXEL_DATA, keep_deferred=True).VR
    if vr not in ("OB", "OW"):
        vr = "OB" if cells.dtype.itemsize == 1 else "OW"
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, vr, cleaned)
    return True


def unused_bits_set(ds: Dataset, path: str) -> bool:
    """Whether the pixel data holds a set bit above Bits Stored, native or compressed."""
    return _dirty_cells(ds, path) is not None or encoded_bits_set(ds, path)


def encoded_bits_set(ds: Dataset, path: str) -> bool:
    """Whether compressed pixel data decodes to a value with a bit set above Bits Stored.

    The codestream would carry it into the output unchanged, where every viewer masks
    it and anyone reading the bits finds it. Frames are decoded one at a time, stopping
    at the first that holds one; where the cell has no bit above Bits Stored nothing is
    decoded. Native data gives False: `clear_unused_bits` clears it in place. Raises
    `UnreadableError` (or `MissingCodecError`) when the pixel data cannot be decoded.
    """
    if not pixel_length(ds) or not is_compressed(ds):
        return False
    geometry = image_geometry(ds, path)
    if geometry.bits_allocated == 1 or geometry.bits_stored >= geometry.bits_allocated:
        return False
    return bool(_encoded_dirty_frames(ds, path, first_only=True))


def _dirty_cells(ds: Dataset, path: str) -> _Cells | None:
    """The layout of native pixel data with some bit set above Bits Stored, else None."""
    if not pixel_length(ds):
        return None
    uid = transfer_syntax(ds)
    if not uid.is_transfer_syntax or uid.is_compressed:
        return None
    cells = _native_cells(image_geometry(ds, path), uid)
    if cells is None or not _dirty_frames(ds, cells, path, first_only=True):
        return None
    return cells


@dataclass
class Cleaned:
    """Native pixel data still in the input file, written with the bits above Bits
    Stored cleared a piece of whole frames at a time; the bytes after the last frame
    (padding) are copied as they are. What `clear_unused_bits` would hold in memory."""

    cells: _Cells
    where: _InFile
    length: int
    path: str

    def pieces(self) -> Iterator[bytes]:
        cells = self.cells
        per_piece = max(1, _PIECE // max(cells.frame_bytes, 1))
        with _file_source(
            self.where.filename, self.where.offset, self.where.mtime, self.path
        ) as read:
            for first in range(0, cells.frames, per_piece):
                count = min(per_piece, cells.frames - first)
                data = read(first * cells.frame_bytes, count * cells.frame_bytes)
                values = np.frombuffer(data, dtype=cells.dtype)
                yield _in_range(values, cells.bits_stored).astype(cells.dtype, copy=False).tobytes()
            end = cells.frames * cells.frame_bytes
            if self.length > end:
                yield bytes(read(end, self.length - end))

    def copy_to(self, out: BinaryIO) -> None:
        for data in self.pieces():
            out.write(data)

    def read(self) -> bytes:
        return b"".join(self.pieces())


def unused_bit_frames(ds: Dataset, path: str) -> list[int]:
    """The 0-based frames with a bit set above Bits Stored, as stored (never masked).

    Native data is read as stored cells; compressed data is decoded without pydicom's
    masking, so the values are what the codec gives. Raises `UnreadableError` (or
    `MissingCodecError`) when the pixel data cannot be read.
    """
    geometry, uid = check_pixel_data(ds, path)
    if geometry.bits_allocated == 1 or geometry.bits_stored >= geometry.bits_allocated:
        return []
    if not is_compressed(ds):
        cells = _native_cells(geometry, uid)
        if cells is None:
            return []
        return _dirty_frames(ds, cells, path, first_only=False)
    return _encoded_dirty_frames(ds, path, first_only=False)


def _encoded_dirty_frames(ds: Dataset, path: str, *, first_only: bool) -> list[int]:
    """Frames of compressed data whose decoded values, unmasked, leave the declared
    range: decoded one at a time, so a long cine costs one frame of memory."""
    frames = Frames(ds, path, as_stored=True)
    geometry = frames.geometry
    dirty: list[int] = []
    for index in range(len(frames)):
        arr = frames[index]
        if arr.dtype.kind not in "ui":
            return []
        if _outside(arr.reshape(1, -1), geometry.bits_stored, geometry.signed)[0]:
            dirty.append(index)
            if first_only:
                break
    return dirty


def _native_cells(geometry: Geometry, uid: UID) -> _Cells | None:
    """The layout of native data with bits above Bits Stored, else None."""
    if geometry.bits_allocated == 1 or geometry.bits_stored >= geometry.bits_allocated:
        return None
    order = "<" if uid.is_little_endian else ">"
    kind = "i" if geometry.signed else "u"
    dtype = np.dtype(f"{order}{kind}{geometry.bits_allocated // 8}")
    frame_bytes = geometry.rows * geometry.columns * geometry.samples * dtype.itemsize
    if geometry.photometric == "YBR_FULL_422":
        frame_bytes = frame_bytes // 3 * 2
    return _Cells(dtype, uid, geometry.bits_stored, frame_bytes, geometry.frames)


def _dirty_frames(ds: Dataset, cells: _Cells, path: str, *, first_only: bool) -> list[int]:
    """Frames holding a value outside the declared range, read a piece at a time."""
    per_piece = max(1, _PIECE // max(cells.frame_bytes, 1))
    dirty: list[int] = []
    with _source(ds, cells.syntax, path) as (read, _):
        for first in range(0, cells.frames, per_piece):
            count = min(per_piece, cells.frames - first)
            data = read(first * cells.frame_bytes, count * cells.frame_bytes)
            block = np.frombuffer(data, dtype=cells.dtype).reshape(count, -1)
            outside = _outside(block, cells.bits_stored, cells.dtype.kind == "i")
            dirty += [first + int(i) for i in np.flatnonzero(outside)]
            if dirty and first_only:
                break
    return dirty


def _outside(frames: Array, bits_stored: int, signed: bool) -> Array:
    """Per frame (row of `frames`): whether any value is outside the declared range.

    For unsigned cells that is a set bit above Bits Stored; for signed cells a bit
    above the High Bit that differs from it, i.e. a value not sign-extended.
    """
    low, high = representable_range(bits_stored, signed)
    if frames.dtype.kind == "u" and signed:
        frames = frames.view(frames.dtype.str.replace("u", "i"))
    elif frames.dtype.kind == "i" and not signed:
        frames = frames.view(frames.dtype.str.replace("i", "u"))
    above: Array = frames.max(axis=1) > high
    return above | (frames.min(axis=1) < low) if signed else above


def _in_range(values: Array, bits_stored: int) -> Array:
    """`values` with the bits above Bits Stored cleared (unsigned) or sign-extended."""
    shift = values.dtype.itemsize * 8 - bits_stored
    result: Array = (
        (values << shift) >> shift
        if values.dtype.kind == "i"
        else values & values.dtype.type((1 << bits_stored) - 1)
    )
    return result


@contextmanager
def _source(ds: Dataset, syntax: UID, path: str) -> Iterator[tuple[Reader, int]]:
    """A reader of (offset, length) within the pixel data value, and the value's length.

    A value left in the input file is read from there, not through pydicom, which would
    load it into the dataset for good; a file changed since its header was read is
    refused, as the copy would be.
    """
    elem = ds._dict.get(PIXEL_DATA)  # type: ignore[call-overload]
    filename = getattr(ds, "filename", None)
    if deferred(elem) and isinstance(filename, str) and not syntax.is_deflated:
        mtime = getattr(ds, "timestamp", None)
        with _file_source(filename, elem.value_tell, mtime, path) as read:
            yield read, int(elem.length)
        return
    value = ds[PIXEL_DATA].value
    if not isinstance(value, bytes | bytearray):
        raise UnreadableError("no pixel data", path=path)
    data = memoryview(value)

    def from_memory(offset: int, length: int) -> bytes | memoryview:
        piece = data[offset : offset + length]
        if len(piece) != length:
            raise UnreadableError("pixel data is truncated", path=path)
        return piece

    yield from_memory, len(data)


@contextmanager
def _file_source(filename: str, start: int, mtime: float | None, path: str) -> Iterator[Reader]:
    try:
        source = os.open(filename, os.O_RDONLY)
    except OSError as exc:
        raise UnreadableError(f"cannot read the file: {exc.strerror}", path=path) from None
    try:
        if mtime is not None and os.fstat(source).st_mtime != mtime:
            raise UnreadableError("the file changed while it was read; nothing written", path)

        def from_file(offset: int, length: int) -> bytes | memoryview:
            data = os.pread(source, length, start + offset)
            if len(data) != length:
                raise UnreadableError("pixel data is truncated", path=path)
            return data

        yield from_file
    finally:
        os.close(source)
