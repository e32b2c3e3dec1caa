"""Codestreams inside encapsulated pixel data, checked against the header before any
is decoded.

A JPEG, JPEG-LS or JPEG 2000 frame carries its own image size, components and precision,
and an RLE frame its segment count and offsets; a codec believes them, not the header.
A 2 KB JPEG claiming 65500 x 65500 pixels in a 512 x 512 image would be decoded at its
word. So each frame's header is read (a few bytes, no decoding) and must agree with
what the dataset's header declares (`deid.limits.Declared`), which the limits have
already bounded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import pairwise

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.uid import UID, RLELossless

from deid.errors import UnreadableError
from deid.limits import Declared

__all__ = ["check_codestreams"]

_SOF = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7})
_J2K_MAX_TILES = 65535
# The last number of each image compression UID under 1.2.840.10008.1.2.4, by codec.
_CODECS = {
    **dict.fromkeys(range(50, 71), "JPEG"),
    80: "JPEG-LS",
    81: "JPEG-LS",
    **dict.fromkeys((90, 91, 92, 93, 201, 202, 203), "JPEG 2000"),
}


@dataclass(frozen=True)
class _Frame:
    """What one codestream says about the image it holds."""

    codec: str
    rows: int
    columns: int
    components: int
    precision: int
    tiles: int = 1


def check_codestreams(ds: Dataset, declared: Declared, uid: UID, path: str) -> None:
    """Refuse compressed pixel data whose codestreams disagree with the header.

    A decoder allocates what the codestream says, not what the header says, so a JPEG,
    JPEG-LS or JPEG 2000 frame must declare the header's Rows, Columns and Samples per
    Pixel, and no more bits a sample than Bits Allocated; an RLE frame must hold one
    segment per byte of a sample, at sane offsets. Each frame's first bytes are read,
    nothing is decoded. Data that cannot be split into frames is left to the decoder.
    `declared` is what the caller found in the header.
    """
    data = ds.get("PixelData")
    if not isinstance(data, bytes | bytearray):
        return
    kind = _codec(uid)
    if kind is None:
        return
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    frames = generate_fragmented_frames(
        data, number_of_frames=declared.frames, extended_offsets=offsets
    )
    try:
        for number, fragments in enumerate(frames, start=1):
            if kind == "rle":
                problem = _rle_problem(fragments, declared)
            else:
                problem = _frame_problem(_codestream_frame(kind, fragments), declared)
            if problem:
                raise UnreadableError(f"frame {number}: {problem}; the file is damaged", path)
    except (ValueError, struct.error, EOFError):
        return


def _codec(uid: UID) -> str | None:
    if uid == RLELossless:
        return "rle"
    root, _, last = str(uid).rpartition(".")
    return _CODECS.get(int(last)) if root == "1.2.840.10008.1.2.4" and last.isdigit() else None


def _frame_problem(frame: _Frame | None, declared: Declared) -> str | None:
    if frame is None:
        return None
    if (frame.rows, frame.columns) != (declared.rows, declared.columns):
        return (
            f"its {frame.codec} codestream declares {frame.rows} x {frame.columns} pixels "
            f"where the header declares {declared.rows} x {declared.columns}"
        )
    if frame.components != declared.samples:
        return (
            f"its {frame.codec} codestream declares {frame.components} components "
            f"where the header declares {declared.samples} samples a pixel"
        )
    if frame.precision > declared.bits_allocated:
        return (
            f"its {frame.codec} codestream declares {frame.precision}-bit samples "
            f"where the header allocates {declared.bits_allocated} bits"
        )
    if frame.tiles > _J2K_MAX_TILES:
        return f"its JPEG 2000 codestream declares {frame.tiles} tiles, more than allowed"
    return None


def _codestream_frame(kind: str, fragments: tuple[bytes, ...]) -> _Frame | None:
    """What a frame's codestream declares, read from its first fragment where that holds
    the header (as it nearly always does), else from the whole frame."""

    def read(data: bytes) -> _Frame | None:
        return _j2k_frame(data) if kind == "JPEG 2000" else _jpeg_frame(kind, data)

    found = read(fragments[0]) if len(fragments) > 1 else None
    return found or read(b"".join(fragments))


def _jpeg_frame(codec: str, data: bytes) -> _Frame | None:
    """The frame header (SOF, or SOF55 for JPEG-LS) of a JPEG codestream."""
    if data[:2] != b"\xff\xd8":
        return None
    at, end = 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
            at += 2
        elif marker in _SOF:
            if at + 10 > end:
                return None
            precision, rows, columns, components = struct.unpack_from(">BHHB", data, at + 4)
            return _Frame(codec, rows, columns, components, precision)
        elif marker in (0xDA, 0xD9):
            return None
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def _j2k_frame(data: bytes) -> _Frame | None:
    """The image and tile size (SIZ) of a JPEG 2000 codestream, bare or in a JP2 file."""
    if data[4:8] == b"jP  ":
        data = _jp2_codestream(data)
    if data[:4] != b"\xff\x4f\xff\x51" or len(data) < 43:
        return None
    xsiz, ysiz, xo, yo, xt, yt, xto, yto, components = struct.unpack_from(">8IH", data, 8)
    if xsiz <= xo or ysiz <= yo or not xt or not yt or len(data) < 42 + 3 * components:
        return None
    precision = max(((data[42 + 3 * i] & 0x7F) + 1 for i in range(components)), default=0)
    tiles = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
    return _Frame("JPEG 2000", ysiz - yo, xsiz - xo, components, precision, tiles)


def _jp2_codestream(data: bytes) -> bytes:
    """The contiguous codestream box of a JP2 file (empty if there is none)."""
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = len(data) - at
        if kind == b"jp2c":
            return data[at + head : at + size]
        if size < head:
            return b""
        at += size
    return b""


def _rle_problem(fragments: tuple[bytes, ...], declared: Declared) -> str | None:
    """What is wrong with an RLE frame's header, for the size the header declares."""
    expected = declared.samples * declared.sample_bytes
    length = sum(map(len, fragments))
    if length < 64:
        return "its RLE header is cut short"
    head = fragments[0] if len(fragments[0]) >= 64 else b"".join(fragments)
    count, *offsets = struct.unpack_from("<16I", head)
    if count != expected:
        return (
            f"its RLE header declares {count} segments where the header's samples and "
            f"bits make {expected}"
        )
    used = offsets[:count]
    if used[0] != 64 or used[-1] >= length or any(b <= a for a, b in pairwise(used)):
        return "its RLE segment offsets do not fit the frame"
    return None
