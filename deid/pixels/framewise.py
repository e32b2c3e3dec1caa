"""Frames decoded one at a time, so memory does not grow with the number of frames.

`Frames` gives frame i of stored values exactly as `decode` would give `decode(...)[i]`
(same decoder, same masking, colour converted to RGB, same dtype), without ever
holding more than one decoded frame. Native pixel data left in the input file is read
frame by frame from the file at its offset; encapsulated data is decoded a frame at a
time, in order when asked in order (one pass over the fragments), else by index.

The decoding options are taken from the dataset when `Frames` is made: later changes
to the dataset (the tag profile, a new pixel data header) do not change what is read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, overload

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options

from deid.errors import TooLargeError, UnreadableError
from deid.pixels.frames import (
    _DECODE_OPTIONS,
    Array,
    Geometry,
    _normalise_values,
    _one_line,
    check_pixel_data,
)
from deid.pixels.rendering import PERCENTILE_SAMPLES
from deid.reader import PIXEL_DATA, deferred

__all__ = ["Extent", "Frames", "decode"]


@dataclass(frozen=True)
class _InFile:
    """A native pixel data value still in the input file, read a frame at a time."""

    filename: str
    offset: int
    mtime: float | None


class Frames(Sequence[np.ndarray]):
    """The frames of one image's stored values, decoded when asked for, one at a time.

    Raises what `decode` raises, in the same words: `check_pixel_data`'s errors (limits,
    missing codec, truncation) when made, decoding errors when a frame is read.

    With `as_stored`, a frame is what the codec gives, unmasked and unconverted (its
    dtype and shape as pydicom's raw decoding makes them): bits above Bits Stored can
    only be found in values nothing has masked yet, and only judged, never shown.
    """

    def __init__(self, ds: Dataset, path: str, *, as_stored: bool = False) -> None:
        self.geometry, self.syntax = check_pixel_data(ds, path)
        self.path = path
        self.as_stored = as_stored
        self._decoder = get_decoder(self.syntax)
        elem = ds._dict.get(PIXEL_DATA)  # type: ignore[call-overload]
        filename = getattr(ds, "filename", None)
        self._options: dict[str, Any] = {
            **_pixel_options(ds, path),
            "transfer_syntax_uid": self.syntax,
            "pixel_keyword": "PixelData",
            "pixel_vr": str(getattr(elem, "VR", None) or "OW"),
            **_DECODE_OPTIONS,
        }
        if as_stored:
            self._options.update(raw=True, correct_unused_bits=False)
        self._source: _InFile | bytes
        if deferred(elem) and isinstance(filename, str) and not self.syntax.is_deflated:
            raw: RawDataElement = elem
            self._source = _InFile(filename, raw.value_tell, getattr(ds, "timestamp", None))
        else:
            value = ds[PIXEL_DATA].value
            if not isinstance(value, bytes | bytearray):
                raise UnreadableError("no pixel data", path=path)
            self._source = bytes(value) if isinstance(value, bytearray) else value
        self._last: tuple[int, Array] | None = None
        grey = self.geometry.samples == 1 and not as_stored
        self._noted = _Noting(self.geometry) if grey else None
        self._sequence: Iterator[tuple[Array, dict[str, Any]]] | None = None
        self._next = 0

    def __len__(self) -> int:
        return self.geometry.frames

    @overload
    def __getitem__(self, index: int) -> Array: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Array]: ...

    def __getitem__(self, index: int | slice) -> Array | Sequence[Array]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        frame = self._decoded(index)
        self._last = (index, frame)
        if self._noted is not None:
            self._noted.see(index, frame)
        return frame

    def extent(self) -> Extent:
        """The `Extent` of all frames: noted on the first pass through them in order (the
        text search), else found by one more pass."""
        if self._noted is None or not self._noted.complete:
            noting = _Noting(self.geometry)
            for index in range(len(self)):
                noting.see(index, self[index])
            self._noted = noting
        return self._noted.extent()

    def __iter__(self) -> Iterator[Array]:
        for index in range(len(self)):
            yield self[index]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of every frame, as `decode` gives it."""
        return self[0].dtype

    @property
    def colour(self) -> bool:
        return self.geometry.samples == 3

    def _decoded(self, index: int) -> Array:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr, properties = self._raw_frame(index)
        except MemoryError:
            raise TooLargeError(
                "the decoded pixels do not fit in the memory allowed", self.path
            ) from None
        except UnreadableError:
            raise
        except Exception as exc:
            raise UnreadableError(
                f"pixel data cannot be decoded: {_one_line(exc)}", path=self.path
            ) from exc
        if self.as_stored:
            return arr
        colour_space = properties.get("photometric_interpretation")
        geometry = self.geometry
        if geometry.samples == 3 and colour_space != "RGB":
            raise UnreadableError(
                f"colour space {colour_space} cannot be converted to RGB", path=self.path
            )
        shape = (geometry.rows, geometry.columns) + ((3,) if geometry.samples == 3 else ())
        try:
            arr = arr.reshape(shape)
        except ValueError as exc:
            raise UnreadableError(
                f"pixel data does not fit its shape: {exc}", path=self.path
            ) from exc
        return _normalise_values(arr, geometry)

    def _raw_frame(self, index: int) -> tuple[Array, dict[str, Any]]:
        """Frame `index` as pydicom decodes it: in order from one pass over encapsulated
        fragments, else by index (native frames sit at a known offset)."""
        source = self._source
        if self.geometry.bits_allocated == 1 and self._decoder.is_native:
            return self._bit_frame(index), {"photometric_interpretation": self.geometry.photometric}
        if isinstance(source, _InFile):
            with _opened(source, self.path) as f:
                return self._decoder.as_array(f, index=index, **self._options)
        if self._decoder.is_native:
            return self._decoder.as_array(source, index=index, **self._options)
        if self._sequence is None or index != self._next:
            if index != 0:
                self._sequence = None
                return self._decoder.as_array(source, index=index, **self._options)
            self._sequence = self._decoder.iter_array(source, **self._options)
        try:
            frame = next(self._sequence)
        except BaseException:
            self._sequence = None  # a pass that failed is not resumed
            raise
        self._next = index + 1
        return frame

    def _bit_frame(self, index: int) -> Array:
        """A frame of packed 1-bit data, which need not start on a byte: pydicom reads
        one byte too few for some such frames."""
        size = self.geometry.frame_pixels * self.geometry.samples
        first, end = index * size, (index + 1) * size
        start, stop = first // 8, -(-end // 8)
        source = self._source
        if isinstance(source, _InFile):
            with _opened(source, self.path) as f:
                f.seek(start, os.SEEK_CUR)
                data = f.read(stop - start)
        else:
            data = source[start:stop]
        if len(data) != stop - start:
            raise UnreadableError("pixel data is truncated", path=self.path)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return bits[first - start * 8 : end - start * 8]


def decode(ds: Dataset, path: str) -> Array:
    """All frames of stored values, shaped (frames, rows, cols) or (frames, rows, cols, 3),
    as `Frames` gives them one at a time (for a caller that needs them all at once).

    Colour comes back as RGB (YBR_FULL, YBR_FULL_422 and the JPEG 2000 colour transforms
    converted, planar configuration undone); PALETTE COLOR stays as indices. Bits above
    Bits Stored are masked, or sign-extended from Bits Stored for signed data; pydicom
    does this for native, RLE and JPEG data but not for JPEG-LS and JPEG 2000, so it is
    repeated here, which is harmless where pydicom already did it: neither a PNG nor the
    text search ever sees what those bits hold (a legacy overlay, a name). The dtype
    follows Bits Allocated and Pixel Representation, in native byte order.
    """
    return np.stack(list(Frames(ds, path)))


@contextmanager
def _opened(source: _InFile, path: str) -> Iterator[BinaryIO]:
    """The input file, open at the pixel data value, once it is known to be the file
    that was read (a file changed since is refused, as the copy of its pixels would be)."""
    try:
        f = open(source.filename, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UnreadableError(f"cannot read the file: {exc.strerror}", path) from None
    with f:
        if source.mtime is not None and os.fstat(f.fileno()).st_mtime != source.mtime:
            raise UnreadableError("the file changed while it was read; nothing written", path)
        f.seek(source.offset)
        yield f


def _pixel_options(ds: Dataset, path: str) -> dict[str, Any]:
    """The Image Pixel values pydicom decodes by, read without loading the pixel data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return as_pixel_options(ds)
    except Exception as exc:
        raise UnreadableError(f"pixel data cannot be decoded: {_one_line(exc)}", path) from exc


@dataclass(frozen=True)
class Extent:
    """What choosing the darkest value needs of all frames: the smallest and largest
    stored value, and the same strided sample of every value that `rendering` measures
    a percentile window on when it sees all frames as one array."""

    low: int
    high: int
    sample: Array


class _Noting:
    """An `Extent` gathered from grey frames seen in order, frame 0 first; a frame seen
    out of order stops it (a later pass must then see them all)."""

    def __init__(self, geometry: Geometry) -> None:
        self.per_frame = geometry.rows * geometry.columns
        self.frames = geometry.frames
        self.step = max(1, self.per_frame * self.frames // PERCENTILE_SAMPLES)
        self.seen = 0
        self.low: int | None = None
        self.high: int | None = None
        self.pieces: list[Array] = []

    @property
    def complete(self) -> bool:
        return self.seen == self.frames

    def see(self, index: int, frame: Array) -> None:
        if index != self.seen:
            return
        flat = frame.reshape(-1)
        least, most = int(flat.min()), int(flat.max())
        self.low = least if self.low is None else min(self.low, least)
        self.high = most if self.high is None else max(self.high, most)
        self.pieces.append(np.array(flat[(-index * self.per_frame) % self.step :: self.step]))
        self.seen += 1

    def extent(self) -> Extent:
        assert self.low is not None and self.high is not None
        return Extent(self.low, self.high, np.concatenate(self.pieces))
