"""What a JPEG or WebP output carries besides its image: segments, chunks, data after its end.

The JPEG counterpart of `deid.pngmeta`. A JPEG the pipeline writes holds only the
segments that describe its pixels: SOI, APP0 JFIF (without a thumbnail), quantisation and
Huffman tables, frame and scan headers, the entropy-coded data and EOI. EXIF (and the
thumbnail and maker notes inside it), XMP, ICC profiles, IPTC and Photoshop blocks,
comments, any other APPn segment (maker data), a JFIF thumbnail and bytes after EOI are
places where a name, a place or a time could travel with the image, so the check of
finished outputs (`deid.verify`) reports each of them by kind and by its byte offset,
never its value, and reads the text in them for original values too. A WebP's RIFF chunks
are read the same way: EXIF, XMP and ICCP chunks are findings.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from deid.phitext import Matcher, text_kinds
from deid.pixelcheck import planes

SOI = b"\xff\xd8"
WEBP_RIFF = b"RIFF"
# Markers with no length field: SOI, EOI, RSTn and TEM.
_BARE = frozenset({0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)})
# Markers that only describe the pixels: SOFn, DHT, DAC, DQT, DRI, SOS, DNL, DHP, EXP.
_IMAGE = frozenset({*range(0xC0, 0xD0), 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF})
_SOS, _EOI, _COM = 0xDA, 0xD9, 0xFE
_EXIF = b"Exif\0"
_XMP = (b"http://ns.adobe.com/xap/1.0/\0", b"http://ns.adobe.com/xmp/extension/\0")
_PRINTABLE = re.compile(rb"[\x20-\x7e\x80-\xff]{4,}")
# The RIFF chunks of a WebP that only describe its pixels (VP8X holds flags and size).
_WEBP_IMAGE = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})
_WEBP_KINDS = {b"EXIF": "EXIF metadata", b"XMP ": "XMP metadata", b"ICCP": "ICC profile"}


@dataclass(frozen=True)
class Segment:
    """One marker segment of a JPEG: its marker byte, where it starts and its payload.

    `marker` is 0 for the bytes after EOI (`payload` holds them). The entropy-coded data
    after each SOS is skipped, not listed.
    """

    marker: int
    offset: int
    payload: bytes

    @property
    def name(self) -> str:
        if 0xE0 <= self.marker <= 0xEF:
            return f"APP{self.marker - 0xE0}"
        return "COM" if self.marker == _COM else f"0x{self.marker:02X}"

    def kind(self) -> str | None:
        """What the segment carries besides the image, or None if the image needs it."""
        m, body = self.marker, self.payload
        if m == 0:
            return "data after the image end"
        if m in _IMAGE or m in _BARE:
            return None
        if m == 0xE0:
            if body.startswith(b"JFIF\0") and len(body) >= 14:
                return "JFIF thumbnail" if body[12] or body[13] or len(body) > 14 else None
            return "JFIF thumbnail" if body.startswith(b"JFXX\0") else "APP0 data"
        if m == 0xE1:
            if body.startswith(_EXIF):
                return "EXIF metadata"
            return "XMP metadata" if body.startswith(_XMP) else "APP1 data"
        if m == 0xE2:
            if body.startswith(b"ICC_PROFILE\0"):
                return "ICC profile"
            return "multi-picture data" if body.startswith(b"MPF\0") else "APP2 data"
        if m == 0xED:
            return "IPTC or Photoshop metadata"
        if m == 0xEE and body.startswith(b"Adobe") and len(body) == 12:
            return None  # the colour transform a decoder needs, nothing else
        if m == _COM:
            return "comment"
        if 0xE0 <= m <= 0xEF:
            return f"APP{m - 0xE0} data"
        return "unexpected segment"


def segments(data: bytes) -> list[Segment] | None:
    """The marker segments of a JPEG in order, or None if the bytes are not a whole one.

    A file that ends before EOI, or whose segment lengths run past its end, is None:
    what cannot be walked cannot be called clean. Bytes after EOI come last, as a
    segment with marker 0.
    """
    if not data.startswith(SOI + b"\xff"):
        return None
    found: list[Segment] = []
    pos = 2
    size = len(data)
    while pos < size:
        if data[pos] != 0xFF:
            return None
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return None
        marker, start = data[pos], pos - 1
        pos += 1
        if marker == _EOI:
            if pos < size:
                found.append(Segment(0, pos, data[pos:]))
            return found
        if marker in _BARE:
            continue
        if pos + 2 > size:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > size:
            return None
        found.append(Segment(marker, start, data[pos + 2 : pos + length]))
        pos += length
        if marker == _SOS:
            pos = _scan_end(data, pos)
    return None


def _scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data that starts at `pos` ends: at the next marker that
    is not a stuffed zero or a restart marker."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos


def _readable(body: bytes) -> str:
    """The runs of printable characters in a segment, one a line, for the text check."""
    return "\n".join(run.decode("latin-1") for run in _PRINTABLE.findall(body))


def jpeg_findings(data: bytes, matcher: Matcher) -> list[tuple[str, str]] | None:
    """(where, kind) of what a JPEG holds besides its image, or None if it is not one.

    Any segment the image does not need is a finding (`Segment.kind`), at its byte offset;
    so are the original values and patterns in the readable text of such a segment.
    """
    walked = segments(data)
    if walked is None:
        return None
    found: list[tuple[str, str]] = []
    for segment in walked:
        kind = segment.kind()
        if kind is None:
            continue
        where = (
            f"after JPEG EOI at byte {segment.offset}"
            if segment.marker == 0
            else f"JPEG {segment.name} segment at byte {segment.offset}"
        )
        found.append((where, kind))
        found += [(where, k) for k in text_kinds(_readable(segment.payload), matcher)]
    return found


def webp_chunks(data: bytes) -> list[tuple[bytes, int, bytes]] | None:
    """(type, offset, data) of each RIFF chunk of a WebP, or None if it is not a whole one.

    Bytes after the RIFF size come last, with an empty type.
    """
    if len(data) < 12 or not data.startswith(WEBP_RIFF) or data[8:12] != b"WEBP":
        return None
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        return None
    found: list[tuple[bytes, int, bytes]] = []
    pos = 12
    while pos + 8 <= end:
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + length > end:
            return None
        found.append((kind, pos, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    if pos < end - 1:
        return None
    if end < len(data):
        found.append((b"", end, data[end:]))
    return found


def webp_findings(data: bytes, matcher: Matcher) -> list[tuple[str, str]] | None:
    """(where, kind) of what a WebP holds besides its image, or None if it is not one."""
    chunks = webp_chunks(data)
    if chunks is None:
        return None
    found: list[tuple[str, str]] = []
    for kind, offset, body in chunks:
        if kind in _WEBP_IMAGE:
            continue
        if not kind:
            found.append((f"after WebP end at byte {offset}", "data after the image end"))
            continue
        where = f"WebP {kind.decode('latin-1').strip()} chunk at byte {offset}"
        found.append((where, _WEBP_KINDS.get(kind, "unexpected chunk")))
        found += [(where, k) for k in text_kinds(_readable(body), matcher)]
    return found


def image_planes(data: bytes) -> list[np.ndarray]:
    """The grey images to read from JPEG or WebP bytes, as a viewer shows them (EXIF
    orientation applied, alpha on white): luma and, for colour, the brightest channel.

    Raises what Pillow raises for a file it cannot decode (`OSError`, `ValueError`,
    `Image.DecompressionBombError` ...).
    """
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        try:
            image = ImageOps.exif_transpose(opened)
        except Exception:  # damaged EXIF: the pixels as stored, still read
            image = opened
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        rgb = image.convert("RGB") if image.mode not in ("L", "RGB") else image
        return planes(np.asarray(rgb))
