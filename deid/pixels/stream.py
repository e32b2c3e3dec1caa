"""New pixel data written a frame at a time: the whole pixel array never exists.

A DICOM output whose pixels change (boxes covered, bits above Bits Stored cleared) gets
its Image Pixel attributes and the length of its Pixel Data up front, as `store` would
set them, so the header can be serialized and checked before anything is written; the
value itself is a `Rewritten` source that, when written, decodes each frame, covers its
boxes and writes it as native little-endian bytes. The bytes are those `redact` and
`store` make from the whole array.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from deid.boxes import Box
from deid.errors import UnreadableError
from deid.pixels.frames import Array, representable_range
from deid.pixels.framewise import Frames
from deid.pixels.redaction import _region, as_native_little_endian
from deid.pixels.rendering import RenderOptions, darkest_of
from deid.reader import PIXEL_DATA

__all__ = ["Rewritten", "plan", "store_streamed"]

_PHOTOMETRIC_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
}
Regions = list[tuple[slice, slice]]


@dataclass
class Rewritten:
    """The new Pixel Data value of one output, made when written: frame by frame,
    decoded, boxes filled with `fill`, as native little-endian bytes holding values of
    `bits_stored` bits, which `store_streamed` sets from the header it writes (a value
    outside them stops the write)."""

    frames: Frames
    shared: Regions
    own: dict[int, Regions]
    fill: Any
    bits_stored: int = 0

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.frames.dtype

    @property
    def packed(self) -> bool:
        return self.frames.geometry.bits_allocated == 1

    @property
    def length(self) -> int:
        """Bytes of the value, padded to even length."""
        geometry = self.frames.geometry
        cells = len(self.frames) * geometry.rows * geometry.columns * geometry.samples
        size = -(-cells // 8) if self.packed else cells * self.dtype.itemsize
        return size + size % 2

    def pieces(self) -> Iterator[bytes]:
        """The value, a frame at a time (1-bit frames packed across frame ends)."""
        low, high = representable_range(self.bits_stored, self.dtype.kind == "i")
        little = self.dtype.newbyteorder("<")
        carry = np.zeros(0, dtype=np.uint8)
        written = 0
        for index in range(len(self.frames)):
            frame = self._covered(index)
            if self.packed:
                bits = np.concatenate([carry, frame.reshape(-1).astype(np.uint8) & 1])
                whole = bits.size - bits.size % 8
                carry = bits[whole:]
                data = np.packbits(bits[:whole], bitorder="little").tobytes()
            else:
                if frame.size and (int(frame.min()) < low or int(frame.max()) > high):
                    raise UnreadableError(
                        "decoded values do not fit Bits Stored", path=self.frames.path
                    )
                data = np.ascontiguousarray(frame, dtype=little).tobytes()
            written += len(data)
            yield data
        if carry.size:
            tail = np.packbits(carry, bitorder="little").tobytes()
            written += len(tail)
            yield tail
        if written % 2:
            yield b"\0"

    def _covered(self, index: int) -> Array:
        frame = self.frames[index]
        regions = self.shared + self.own.get(index, [])
        if not regions:
            return frame
        out = frame.copy()
        fill = np.asarray(self.fill, dtype=out.dtype)
        for ys, xs in regions:
            out[ys, xs] = fill
        return out

    def copy_to(self, out: BinaryIO) -> None:
        for data in self.pieces():
            out.write(data)

    def read(self) -> bytes:
        return b"".join(self.pieces())


def plan(
    ds: Dataset,
    frames: Frames,
    shared: Sequence[Box],
    per_frame: Sequence[Sequence[Box]],
    options: RenderOptions = RenderOptions(),
) -> Rewritten:
    """What `redact` with these boxes would make, to be written a frame at a time.

    The value that renders darkest is chosen as `darkest_value` chooses it from all
    frames: for grey data that takes one pass over the frames, and only when some box
    is to be filled.
    """
    rows, cols = frames.geometry.rows, frames.geometry.columns
    regions = [r for box in shared if (r := _region(box, rows, cols))]
    own: dict[int, Regions] = {}
    for index, boxes in enumerate(per_frame):
        found = [r for box in boxes if (r := _region(box, rows, cols))]
        if found:
            own[index] = found
    fill: Any = 0
    if regions or own:
        if frames.colour:
            fill = (0, 0, 0)
        else:
            seen = frames.extent()
            present = (seen.low, seen.high)
            fill = darkest_of(ds, frames.dtype, present, seen.sample, options)
    return Rewritten(frames, regions, own, fill)


def store_streamed(ds: Dataset, rewritten: Rewritten) -> None:
    """`store` for pixel data written later: the same attributes, transfer syntax and
    element, with `rewritten` as the value."""
    geometry = rewritten.frames.geometry
    count, dtype = len(rewritten.frames), rewritten.dtype
    colour = rewritten.frames.colour
    photometric = "RGB" if colour else str(ds.get("PhotometricInterpretation") or "MONOCHROME2")
    was_multiframe = "NumberOfFrames" in ds
    width = dtype.itemsize * 8
    bits_stored = min(int(ds.get("BitsStored") or width), width)
    packed = rewritten.packed
    if not packed and (dtype.itemsize in (1, 2)) and photometric not in _PHOTOMETRIC_SAMPLES:
        raise ValueError(f"Unsupported 'photometric_interpretation' value '{photometric}'")

    as_native_little_endian(ds)
    bits_allocated = 1 if packed else width
    if packed:
        bits_stored = 1
    rewritten.bits_stored = bits_stored
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = geometry.rows, geometry.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if dtype.kind == "i" else 0
    if colour:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if count > 1 or was_multiframe:
        ds.NumberOfFrames = count
    vr = "OB" if bits_allocated <= 8 else "OW"
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, vr, rewritten, validation_mode=config.IGNORE)
