"""Redact stored pixel data and store it back.

`redact` fills boxes in the stored values with the value that renders darkest,
`black_out` fills them black in a rendered image, and `store` writes stored values back
into the dataset as uncompressed (native, little-endian) pixel data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import pack_bits
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from deid.boxes import Box
from deid.pixels.frames import Array, check_frames, representable_range, transfer_syntax
from deid.pixels.rendering import RenderOptions, darkest_value

__all__ = ["black_out", "redact", "store"]

_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_OFFSET_TABLE_TAGS = (0x7FE00001, 0x7FE00002)


def redact(
    ds: Dataset,
    frames: np.ndarray,
    boxes: Sequence[Box],
    options: RenderOptions = RenderOptions(),
    *,
    per_frame: Sequence[Sequence[Box]] | None = None,
) -> np.ndarray:
    """A copy of `frames` with boxes filled with `darkest_value`.

    `boxes` apply to every frame; `per_frame[i]`, if given, to frame i only. Parts
    outside the image are ignored.
    """
    check_frames(frames)
    out = frames.copy()
    rows, cols = frames.shape[1], frames.shape[2]
    shared = [r for box in boxes if (r := _region(box, rows, cols))]
    own = [
        [r for box in frame_boxes if (r := _region(box, rows, cols))]
        for frame_boxes in (per_frame or [])
    ]
    if shared or any(own):
        fill = np.asarray(darkest_value(ds, frames, options), dtype=frames.dtype)
        for ys, xs in shared:
            out[:, ys, xs] = fill
        for index, regions in enumerate(own):
            for ys, xs in regions:
                out[index, ys, xs] = fill
    return out


def black_out(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """A copy of a rendered image with every box filled black (0)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"an image must be (rows, cols) or (rows, cols, 3), not {image.shape}")
    out = image.copy()
    for box in boxes:
        region = _region(box, image.shape[0], image.shape[1])
        if region:
            out[region] = 0
    return out


def store(ds: Dataset, frames: np.ndarray) -> None:
    """Write stored values back into `ds` as native Explicit VR Little Endian pixel data.

    The Image Pixel attributes follow the array: RGB with Planar Configuration 0 for
    colour (decode already converted YBR), Bits Allocated/Stored and Pixel Representation
    from the dtype and the old Bits Stored, Number of Frames from the frame axis (kept at
    1 when the dataset had it, since multi-frame IODs require it). The SOP Instance UID is
    left alone (UID replacement is the tag profile's job) and Lossy Image Compression
    stays: the values were lossy once and still are. Encapsulation-only elements (the
    extended offset table) are dropped; big-endian datasets are converted to little.
    """
    check_frames(frames)
    if frames.dtype.kind not in "ui":
        raise ValueError(f"stored values must be integers, not {frames.dtype}")
    count = frames.shape[0]
    colour = frames.ndim == 4
    photometric = "RGB" if colour else str(ds.get("PhotometricInterpretation") or "MONOCHROME2")
    was_multiframe = "NumberOfFrames" in ds
    bits_allocated = int(ds.get("BitsAllocated") or 0)
    width = frames.dtype.itemsize * 8
    bits_stored = min(int(ds.get("BitsStored") or width), width)
    values = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<"))
    low, high = representable_range(bits_stored, values.dtype.kind == "i")
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        bits_stored = width

    as_native_little_endian(ds)
    if bits_allocated != 1 and values.dtype.itemsize in (1, 2):
        single = values if count > 1 else values[0]
        ds.set_pixel_data(single, photometric, bits_stored, generate_instance_uid=False)
    else:
        _set_pixel_data(ds, values, photometric, bits_stored, packed=bits_allocated == 1)
    if was_multiframe or count > 1:
        ds.NumberOfFrames = count


def as_native_little_endian(ds: Dataset) -> None:
    """Ready `ds` for new native pixel data: Explicit VR Little Endian (a big-endian
    dataset converted), without the elements only encapsulated data has."""
    if transfer_syntax(ds) == ExplicitVRBigEndian or ds.original_encoding[1] is False:
        _convert_to_little_endian(ds)
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for tag in _OFFSET_TABLE_TAGS:
        if tag in ds:
            del ds[tag]


def _region(box: Box, rows: int, columns: int) -> tuple[slice, slice] | None:
    """The box clipped to the image as (row slice, column slice); None when nothing is left."""
    top, bottom = max(box.top, 0), min(box.bottom, rows)
    left, right = max(box.left, 0), min(box.right, columns)
    if top >= bottom or left >= right:
        return None
    return slice(top, bottom), slice(left, right)


def _set_pixel_data(
    ds: Dataset, values: Array, photometric: str, bits_stored: int, *, packed: bool
) -> None:
    """What `Dataset.set_pixel_data` does, for the 32-bit and 1-bit data it refuses."""
    count, rows, columns = values.shape[:3]
    samples = 3 if values.ndim == 4 else 1
    if packed:
        data = pack_bits(values.reshape(-1).astype(np.uint8) & 1, pad=False)
        bits_allocated, bits_stored = 1, 1
    else:
        data = values.tobytes()
        bits_allocated = values.dtype.itemsize * 8
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if values.dtype.kind == "i" else 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if count > 1:
        ds.NumberOfFrames = count
    elif "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.PixelData = data + b"\0" * (len(data) % 2)
    element = ds["PixelData"]
    element.VR = "OB" if bits_allocated <= 8 else "OW"
    element.is_undefined_length = False


def _convert_to_little_endian(ds: Dataset) -> None:
    """Make a big-endian dataset writable as little endian.

    Reading every element turns raw big-endian bytes into values; binary words (OW, OL,
    OF, OD, OV) other than the pixel data, which `store` replaces, are byte-swapped.
    """

    def swap(_: Dataset, element: Any) -> None:
        width = _SWAP_WIDTH.get(str(element.VR))
        if width and element.tag != 0x7FE00010 and isinstance(element.value, bytes):
            usable = len(element.value) - len(element.value) % width
            words = np.frombuffer(element.value[:usable], dtype=f">u{width}")
            element.value = words.astype(f"<u{width}").tobytes() + element.value[usable:]

    ds.walk(swap)
    ds.set_original_encoding(False, True)
