"""Images made upload-ready: a capped size, the right format, nothing but pixels.

`fit` caps the long side (chat assistants scale larger images down themselves, and
read small text better from an image they did not have to shrink). `encode` picks the
format by content: photographs go as JPEG, whose quality steps down until the file fits
the byte cap; grey renders of scans, screenshots and flat graphics go as PNG, which keeps
every edge of their text and lines, or as high-quality JPEG when the PNG would be too
large. Only if neither fits is the image made smaller, step by step. Grey images stay
grey. Every file holds only what its pixels need: the PNG is `deid.output.png_bytes`
(no text, time or EXIF chunk), and each JPEG is walked after writing to prove it holds
no EXIF, ICC, XMP, comment or other APPn segment (`deid.jpegmeta`).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from deid import jpegmeta
from deid.errors import UsageError
from deid.output import png_bytes

MAX_SIDE = 2048
MIN_SIDE = 256  # below this long side an image says too little to be worth sending
PHOTO_QUALITIES = (92, 85, 78, 70, 60)
SHARP_QUALITIES = (95, 90)  # for graphics that do not fit as PNG: text stays crisp
_SAMPLE_ROWS = 256
_PHOTO_COLOURS = 8192  # distinct colours in the sampled rows above which content is a photo
_FLAT = 0.5  # ... unless this share of neighbouring pixels or more is identical


def fit(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """`image` with its long side at most `max_side`, downscaled with Lanczos (after a
    box reduction for large factors); returned as it is when it already fits, never
    enlarged."""
    height, width = image.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (
        max_side if width >= height else max(1, round(width * scale)),
        max_side if height > width else max(1, round(height * scale)),
    )
    picture = Image.fromarray(_checked(image))
    return np.asarray(picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def encode(image: np.ndarray, max_bytes: int, *, photo: bool) -> tuple[bytes, str]:
    """`image` (uint8, grey or RGB) as the bytes of a file of at most `max_bytes`, and
    its extension ("png" or "jpg").

    Photographic content (`photo`, or many distinct colours with few flat areas) is a
    JPEG at the highest quality of `PHOTO_QUALITIES` that fits; other content is a PNG
    if that fits, else a JPEG at a quality of `SHARP_QUALITIES` with full colour
    resolution. When nothing fits the image is downscaled and tried again, so the result
    may be smaller than `image` (`encoded_size` reads its size). An RGB image whose
    channels are all equal is written grey. Raises `UsageError` if the cap cannot be met
    even at `MIN_SIDE` pixels on the long side.
    """
    if max_bytes <= 0:
        raise UsageError(f"the size cap must be positive, not {max_bytes} bytes")
    current = _grey_if_grey(_checked(image))
    photographic = photo or _photographic(current)
    while True:
        found, smallest = (_as_photo if photographic else _as_graphic)(current, max_bytes)
        if found is not None:
            return found
        long_side = max(current.shape[:2])
        if long_side <= MIN_SIDE:
            raise UsageError(
                f"cannot fit an image in {max_bytes} bytes, even at {long_side} pixels on its "
                "long side: give a larger size cap"
            )
        # File size goes with the area: aim a little under the cap, in steps of 0.5-0.9.
        factor = min(0.9, max(0.5, 0.95 * math.sqrt(max_bytes / smallest)))
        current = fit(current, max(MIN_SIDE, int(long_side * factor)))


def encoded_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, read from its header."""
    with Image.open(io.BytesIO(data)) as picture:
        return picture.size


def _checked(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise TypeError(f"needs a uint8 (H, W) or (H, W, 3) image, not {image.dtype} {image.shape}")
    if not image.size:
        raise TypeError("needs an image with pixels, not an empty one")
    return image


def _grey_if_grey(image: np.ndarray) -> np.ndarray:
    """An RGB image whose three channels are the same, as one grey channel."""
    if image.ndim == 3 and all(np.array_equal(image[:, :, 0], image[:, :, c]) for c in (1, 2)):
        return np.ascontiguousarray(image[:, :, 0])
    return image


def _photographic(image: np.ndarray) -> bool:
    """Whether colour content looks like a photograph: many distinct colours and few
    runs of identical pixels, as camera noise makes. Grey renders, screenshots and flat
    graphics are not."""
    if image.ndim == 2:
        return False
    step = max(1, image.shape[0] // _SAMPLE_ROWS)
    rows = image[::step].astype(np.uint32)
    packed = (rows[:, :, 0] << 16) | (rows[:, :, 1] << 8) | rows[:, :, 2]
    if len(np.unique(packed)) <= _PHOTO_COLOURS:
        return False
    if packed.shape[1] < 2:
        return True
    return float(np.mean(packed[:, 1:] == packed[:, :-1])) < _FLAT


Attempt = tuple[tuple[bytes, str] | None, int]


def _as_photo(image: np.ndarray, max_bytes: int) -> Attempt:
    """The best JPEG quality that fits (qualities are tried as a bisection: sizes fall
    with quality), or None and the smallest size made."""
    qualities = PHOTO_QUALITIES
    best = _jpeg(image, qualities[0], subsampling="4:2:0")
    if len(best) <= max_bytes:
        return (best, "jpg"), len(best)
    last = _jpeg(image, qualities[-1], subsampling="4:2:0")
    if len(last) > max_bytes:
        return None, len(last)
    low, high = 0, len(qualities) - 1  # qualities[low] too big, qualities[high] fits
    while high - low > 1:
        middle = (low + high) // 2
        data = _jpeg(image, qualities[middle], subsampling="4:2:0")
        if len(data) <= max_bytes:
            high, last = middle, data
        else:
            low = middle
    return (last, "jpg"), len(last)


def _as_graphic(image: np.ndarray, max_bytes: int) -> Attempt:
    """A PNG if one fits (fast deflate, then a harder one when close), else a sharp
    JPEG, or None and the smallest size made."""
    data = png_bytes(image)
    if len(data) <= max_bytes:
        return (data, "png"), len(data)
    if len(data) <= 1.4 * max_bytes:
        data = png_bytes(image, compress_level=6)
        if len(data) <= max_bytes:
            return (data, "png"), len(data)
    smallest = len(data)
    for quality in SHARP_QUALITIES:
        data = _jpeg(image, quality, subsampling="4:4:4")
        smallest = min(smallest, len(data))
        if len(data) <= max_bytes:
            return (data, "jpg"), len(data)
    return None, smallest


def _jpeg(image: np.ndarray, quality: int, *, subsampling: str) -> bytes:
    """A baseline JFIF JPEG of `image`: SOI, APP0 JFIF, tables, frame, scan, EOI."""
    out = io.BytesIO()
    Image.fromarray(image).save(
        out, format="JPEG", quality=quality, optimize=True, subsampling=subsampling
    )
    data = out.getvalue()
    walked = jpegmeta.segments(data)
    if walked is None or any(segment.kind() is not None for segment in walked):
        raise RuntimeError("the JPEG encoder wrote a segment that is not image data")
    return data
