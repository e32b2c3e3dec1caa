"""Frames of stored values: how many, which ones, and decoded how.

`check_pixel_data` makes every check decoding depends on, without decoding (the frames
themselves are decoded by `framewise`). When no decoder is installed for a compressed
transfer syntax the error names the pip package that adds one (`data/codecs.toml`).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from deid.codestreams import check_codestreams
from deid.errors import MissingCodecError, UnreadableError, UsageError
from deid.limits import Declared, raw_value
from deid.reader import pixel_length
from deid.tags import text_of

__all__ = [
    "Array",
    "Geometry",
    "check_frames",
    "check_pixel_data",
    "frame_count",
    "frame_digest",
    "image_geometry",
    "is_compressed",
    "representable_range",
    "select_frames",
    "transfer_syntax",
]

Array = npt.NDArray[Any]
_DECODE_OPTIONS: dict[str, Any] = {"allow_excess_frames": False}


@dataclass(frozen=True)
class Geometry(Declared):
    """The Image Pixel attributes decoding and checking depend on: what the header
    declares (its sizes as `deid.limits` checks them), and how values are stored."""

    bits_stored: int
    signed: bool


def frame_count(ds: Dataset) -> int:
    """Number of frames in the pixel data: Number of Frames, or 1 when absent or invalid."""
    try:
        value = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError, OverflowError):
        return 1
    return max(value, 1)


def select_frames(count: int, spec: str) -> list[int]:
    """Zero-based frame indices chosen by a user's spec.

    `spec` is "all", "middle" (frame count // 2, the upper middle for even counts), a
    1-based frame number, or several numbers with commas ("1,5,9"). Anything else, or a
    number outside 1..count, is a usage error.
    """
    text = spec.strip().lower()
    if count >= 1:
        if text == "all":
            return list(range(count))
        if text == "middle":
            return [count // 2]
        numbers = text.split(",")
        if all(re.fullmatch(r"[0-9]+", n) and 1 <= int(n) <= count for n in numbers):
            return sorted({int(n) - 1 for n in numbers})
    raise UsageError(
        f"frame spec '{spec}' does not fit an image with {count} frame(s): "
        f"use 'all', 'middle' or a frame number from 1 to {count}"
    )


def is_compressed(ds: Dataset) -> bool:
    """True when the transfer syntax encapsulates (compresses) the pixel data.

    Deflate compresses the whole dataset, not the pixel data, so it counts as native.
    An unknown transfer syntax counts as compressed: it cannot be read as native data.
    """
    uid = transfer_syntax(ds)
    return not uid.is_transfer_syntax or bool(uid.is_compressed)


def check_pixel_data(ds: Dataset, path: str) -> tuple[Geometry, UID]:
    """Raise what `decode` would for missing, malformed, truncated or undecodable-here
    data; else the geometry and transfer syntax found.

    For callers that keep the pixel data as it is: the checks are cheap (attributes,
    native length, decoder availability, the size each codestream declares) and
    compressed data is not decoded, so a corrupt codestream still passes.
    """
    actual = pixel_length(ds)
    if not actual:
        raise UnreadableError("no pixel data", path=path)
    geometry = image_geometry(ds, path)
    if geometry.samples not in (1, 3):
        raise UnreadableError(f"{geometry.samples} samples per pixel are not supported", path=path)
    uid = transfer_syntax(ds)
    if not uid.is_transfer_syntax or uid.is_compressed:
        if not _decoder_available(uid):
            raise MissingCodecError(_missing_codec_message(uid), path=path)
        check_codestreams(ds, geometry, uid, path)
    else:
        expected = geometry.native_bytes
        if actual < expected:
            raise UnreadableError(
                f"pixel data is truncated: {actual} of {expected} bytes", path=path
            )
    return geometry, uid


def frame_digest(frame: np.ndarray) -> bytes:
    """A short digest of one frame's stored values: identical frames are read once."""
    return hashlib.blake2b(frame.tobytes(), digest_size=16).digest()


def _decoder_available(uid: UID) -> bool:
    """Whether pydicom has a usable decoding plugin for `uid` (tests replace this)."""
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False


@cache
def _codec_table() -> dict[str, dict[str, Any]]:
    text = files("deid").joinpath("data", "codecs.toml").read_text(encoding="utf-8")
    table: dict[str, dict[str, Any]] = tomllib.loads(text)["transfer_syntax"]
    return table


def _missing_codec_message(uid: UID) -> str:
    entry = _codec_table().get(str(uid))
    if entry is None:
        name = uid.name if uid.is_transfer_syntax else "an unknown transfer syntax"
        return f"pixel data is compressed as {name} ({uid}) and no decoder for it is available"
    name = entry["name"]
    packages: list[str] = entry.get("packages", [])
    if packages:
        return (
            f"pixel data is compressed as {name} ({uid}) and no decoder for it is installed: "
            f"pip install {' '.join(packages)}"
        )
    hint = entry.get("hint", "transcode it to an uncompressed transfer syntax first")
    return f"pixel data is compressed as {name} ({uid}), which no pip package decodes: {hint}"


def transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax from the file meta, else guessed from how the dataset was read."""
    meta = getattr(ds, "file_meta", None)
    uid = text_of(meta, "TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(uid)
    implicit, little = ds.original_encoding
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def image_geometry(ds: Dataset, path: str) -> Geometry:
    """The Image Pixel attributes of `ds`, or UnreadableError naming what is wrong."""
    values: dict[str, int] = {}
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        values[keyword] = _positive(ds, keyword, path)
    bits_allocated = values["BitsAllocated"]
    if bits_allocated not in (1, 8, 16, 32):
        raise UnreadableError(f"Bits Allocated {bits_allocated} is not supported", path=path)
    bits_stored = _positive(ds, "BitsStored", path) if "BitsStored" in ds else bits_allocated
    return Geometry(
        rows=values["Rows"],
        columns=values["Columns"],
        samples=_positive(ds, "SamplesPerPixel", path) if "SamplesPerPixel" in ds else 1,
        frames=frame_count(ds),
        bits_allocated=bits_allocated,
        bits_stored=min(bits_stored, bits_allocated),
        signed=raw_value(ds, 0x00280103) == 1,  # Pixel Representation
        photometric=text_of(ds, "PhotometricInterpretation"),
    )


def _positive(ds: Dataset, keyword: str, path: str) -> int:
    """A required positive integer attribute, or UnreadableError naming the keyword."""
    try:
        value = int(raw_value(ds, Tag(keyword)))
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise UnreadableError(f"image pixel attribute {keyword} is missing or invalid", path=path)
    return value


def _one_line(exc: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _normalise_values(arr: Array, geometry: Geometry) -> Array:
    """Native byte order, dtype per Bits Allocated, bits above Bits Stored cleared/extended."""
    if geometry.bits_allocated == 1:
        return arr.astype(np.uint8, copy=False)
    kind = "i" if geometry.signed else "u"
    target = np.dtype(f"{kind}{max(geometry.bits_allocated // 8, arr.dtype.itemsize)}")
    if arr.dtype != target:
        if arr.dtype.itemsize == target.itemsize:
            arr = arr.astype(arr.dtype.newbyteorder("=")).view(target)
        else:
            arr = arr.astype(target)
    shift = target.itemsize * 8 - geometry.bits_stored
    if shift > 0:
        if geometry.signed:
            arr = (arr << shift) >> shift
        else:
            arr = arr & target.type((1 << geometry.bits_stored) - 1)
    return arr


def check_frames(frames: Array) -> None:
    if frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3):
        return
    raise ValueError(
        f"frames must be (frames, rows, cols) or (frames, rows, cols, 3), not {frames.shape}"
    )


def representable_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1
