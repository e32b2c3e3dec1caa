"""Image checks: the check of finished PNG, JPEG and WebP outputs for identifying values.

Part of the independent check of finished outputs (`deid.verify`, which re-exports
`check_png` and `check_jpeg`): an image is read back from disk, its metadata (PNG
chunks, JPEG and WebP segments; `deid.pngmeta`, `deid.jpegmeta`) looked through, and
its pixels read for text (`deid.pixelcheck`). Kept apart from `deid.verify` because the
table of formats and the reading of images are one concern, the same for every format.
Findings name the kind of value and where it was seen, never the value itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from deid import jpegmeta
from deid.leak import Leak
from deid.phitext import Matcher
from deid.pixelcheck import face_findings, pixel_findings, png_planes
from deid.pngmeta import chunk_findings
from deid.text import TextPolicy

__all__ = ["FORMATS", "ImageFormat", "check_image", "check_jpeg", "check_png"]

ImageFormat = Literal["png", "jpeg", "webp"]
# Per image format: its name in findings, what it holds besides its image (None if the
# bytes are not one) and the grey planes its pixels are read from.
_Metadata = Callable[[bytes, Matcher], list[tuple[str, str]] | None]
FORMATS: dict[ImageFormat, tuple[str, _Metadata, Callable[[bytes], list[np.ndarray]]]] = {
    "png": ("PNG", chunk_findings, png_planes),
    "jpeg": ("JPEG", jpegmeta.jpeg_findings, jpegmeta.image_planes),
    "webp": ("WebP", jpegmeta.webp_findings, jpegmeta.image_planes),
}
"""The image formats checked, by the file type `deid.verify` gives them."""


def check_png(path: Path, originals: Mapping[str, str] | None, policy: TextPolicy) -> list[Leak]:
    """Everything identifying in one PNG output: metadata chunks, then text in the pixels.

    Any tEXt, zTXt, iTXt, eXIf or tIME chunk is a leak, and so is any chunk an image
    does not need or data after the end. The pixels are read by Tesseract (enlarged if
    small, and inverted, so dark text on light shows too); words that spell an original
    value or an identifying pattern are reported by kind, and any other confident,
    sharply drawn word of two letters or digits that is not kept text (`kept_token`) as
    "text that is not kept". Locations only, never what was read. Raises
    `OcrUnavailableError` when Tesseract cannot run.
    """
    return check_image(path, Matcher(originals), policy, "png")


def check_jpeg(path: Path, originals: Mapping[str, str] | None, policy: TextPolicy) -> list[Leak]:
    """Everything identifying in one JPEG output, as `check_png` for a PNG: any segment
    the image does not need (EXIF, XMP, ICC, IPTC, comments, other APPn, a thumbnail,
    data after EOI; see `deid.jpegmeta`), then text in the pixels as a viewer shows them.
    """
    return check_image(path, Matcher(originals), policy, "jpeg")


def check_image(
    path: Path, matcher: Matcher, policy: TextPolicy, fmt: ImageFormat, faces: bool = False
) -> list[Leak]:
    """Everything identifying in one image output of format `fmt`: its metadata, then
    text in its pixels, then (with `faces`) any face. Takes a `Matcher` already built,
    so that checking a whole set of outputs (`deid.verify.verify_outputs`) builds it
    once. A file that cannot be read is reported as such: what cannot be checked is not
    clean.
    """
    name = str(path)
    label, metadata, read_planes = FORMATS[fmt]
    try:
        data = path.read_bytes()
    except OSError:
        return [Leak(name, "file", "unreadable file")]
    found = metadata(data, matcher)
    try:
        greys = read_planes(data) if found is not None else None
    except Exception:  # Pillow raises many types on corrupt input; all mean "unreadable"
        greys = None
    leaks = [Leak(name, where, kind) for where, kind in found or []]
    if found is None or greys is None:
        return [*leaks, Leak(name, "file", f"unreadable {label}")]
    leaks += [Leak(name, where, kind) for where, kind in pixel_findings(greys, matcher, policy)]
    if faces:
        leaks += [Leak(name, where, "face") for where in face_findings(data)]
    return list(dict.fromkeys(leaks))
