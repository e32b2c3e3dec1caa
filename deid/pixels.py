"""Decode, render and black out DICOM pixel data.

Burned-in text can only be found on an image that looks the way a radiologist's viewer
shows it, and can only be removed by changing the stored values a viewer reads. This
module does both halves:

* `decode` turns a dataset's pixel data (native or compressed) into one numpy array of
  stored values with a frame axis, colour already converted to RGB.
* `render` applies the DICOM greyscale pipeline (Modality LUT, VOI LUT or window,
  MONOCHROME1 inversion) or the palette, giving the uint8 picture an OCR engine sees.
* `redact` fills boxes in the stored values with the value that renders darkest, and
  `store` writes the result back as uncompressed pixel data.

Rendering never resizes, so a box found on a rendered frame addresses the same pixels in
the stored frames.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from deid.boxes import Box
from deid.errors import MissingCodecError, UnreadableError, UsageError
from deid.reader import pixel_length
from deid.tags import text_of

__all__ = [
    "RenderOptions",
    "Switch",
    "black_out",
    "check_pixel_data",
    "darkest_value",
    "decode",
    "frame_count",
    "is_compressed",
    "redact",
    "render",
    "select_frames",
    "store",
]

Array = npt.NDArray[Any]
Switch = Literal["on", "off", "if-present"]
_SWITCHES = ("on", "off", "if-present")

_PALETTE = "PALETTE COLOR"
_PERCENTILES = (0.5, 99.5)
_PERCENTILE_SAMPLES = 1_000_000
_FULL_SEARCH_LIMIT = 1 << 16
# Render through a table of stored values when a frame has this many pixels per entry.
_TABLE_MIN_PIXELS = 1 << 16
_PIXELS_PER_ENTRY = 4
_LUMA = np.array([0.299, 0.587, 0.114])
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_OFFSET_TABLE_TAGS = (0x7FE00001, 0x7FE00002)
_DECODE_OPTIONS: dict[str, Any] = {"allow_excess_frames": False}


@dataclass(frozen=True)
class RenderOptions:
    """Rendering steps as explicit switches, each on, off or if-present.

    "if-present" applies a step when the dataset carries what it needs; "on" insists and
    raises `UnreadableError` when it does not; "off" skips it. Without a usable VOI step
    (absent or off) the frame is windowed on its own 0.5..99.5 percentiles, so every
    frame still fills the grey range.
    """

    modality_lut: Switch = "if-present"
    voi: Switch = "if-present"
    palette: Switch = "if-present"
    invert_monochrome1: bool = True

    def __post_init__(self) -> None:
        for name in ("modality_lut", "voi", "palette"):
            value = getattr(self, name)
            if value not in _SWITCHES:
                raise UsageError(
                    f"render option {name} must be 'on', 'off' or 'if-present', not {value!r}"
                )


@dataclass(frozen=True)
class _Lut:
    """A DICOM lookup table: values below `first` map to entry 0, above the end to the last."""

    first: int
    table: Array
    bits: int

    def apply(self, values: Array) -> Array:
        index = np.rint(values).astype(np.int64) - self.first
        return np.asarray(self.table[np.clip(index, 0, len(self.table) - 1)])


@dataclass(frozen=True)
class _Window:
    """Window center and width with the VOI LUT Function that shapes the ramp."""

    center: float
    width: float
    function: str


@dataclass(frozen=True)
class _Geometry:
    """The Image Pixel attributes decoding and checking depend on."""

    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str


def frame_count(ds: Dataset) -> int:
    """Number of frames in the pixel data: Number of Frames, or 1 when absent or invalid."""
    try:
        value = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1
    return max(value, 1)


def select_frames(count: int, spec: str) -> list[int]:
    """Zero-based frame indices chosen by a user's spec.

    `spec` is "all", "middle" (frame count // 2, the upper middle for even counts) or a
    1-based frame number. Anything else, or a number outside 1..count, is a usage error.
    """
    text = spec.strip().lower()
    if count >= 1:
        if text == "all":
            return list(range(count))
        if text == "middle":
            return [count // 2]
        if re.fullmatch(r"[0-9]+", text) and 1 <= int(text) <= count:
            return [int(text) - 1]
    raise UsageError(
        f"frame spec '{spec}' does not fit an image with {count} frame(s): "
        f"use 'all', 'middle' or a frame number from 1 to {count}"
    )


def is_compressed(ds: Dataset) -> bool:
    """True when the transfer syntax encapsulates (compresses) the pixel data.

    Deflate compresses the whole dataset, not the pixel data, so it counts as native.
    An unknown transfer syntax counts as compressed: it cannot be read as native data.
    """
    uid = _transfer_syntax(ds)
    return not uid.is_transfer_syntax or bool(uid.is_compressed)


def decode(ds: Dataset, path: str) -> np.ndarray:
    """All frames of stored values, shaped (frames, rows, cols) or (frames, rows, cols, 3).

    Colour comes back as RGB (YBR_FULL, YBR_FULL_422 and the JPEG 2000 colour transforms
    converted, planar configuration undone); PALETTE COLOR stays as indices. Bits above
    Bits Stored are masked, or sign-extended from Bits Stored for signed data; pydicom
    does this for native, RLE and JPEG data but not for JPEG-LS and JPEG 2000, so it is
    repeated here, which is harmless where pydicom already did it. The dtype follows
    Bits Allocated and Pixel Representation, in native byte order.
    """
    geometry, uid = _check(ds, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, properties = get_decoder(uid).as_array(ds, **_DECODE_OPTIONS)
    except Exception as exc:
        raise UnreadableError(f"pixel data cannot be decoded: {_one_line(exc)}", path=path) from exc
    colour_space = properties.get("photometric_interpretation")
    if geometry.samples == 3 and colour_space != "RGB":
        raise UnreadableError(f"colour space {colour_space} cannot be converted to RGB", path=path)
    shape = (geometry.rows, geometry.columns) + ((3,) if geometry.samples == 3 else ())
    try:
        arr = arr.reshape((-1, *shape))
    except ValueError as exc:
        raise UnreadableError(f"pixel data does not fit its shape: {exc}", path=path) from exc
    return _normalise_values(arr, geometry)


def check_pixel_data(ds: Dataset, path: str) -> None:
    """Raise what `decode` would for missing, malformed, truncated or undecodable-here data.

    For callers that keep the pixel data as it is: the checks are cheap (attributes,
    native length, decoder availability) and compressed data is not decoded, so a
    corrupt codestream still passes.
    """
    _check(ds, path)


def _check(ds: Dataset, path: str) -> tuple[_Geometry, UID]:
    """The checks shared by `decode` and `check_pixel_data`; the geometry and syntax found."""
    actual = pixel_length(ds)
    if not actual:
        raise UnreadableError("no pixel data", path=path)
    geometry = _geometry(ds, path)
    if geometry.samples not in (1, 3):
        raise UnreadableError(f"{geometry.samples} samples per pixel are not supported", path=path)
    uid = _transfer_syntax(ds)
    if not uid.is_transfer_syntax or uid.is_compressed:
        if not _decoder_available(uid):
            raise MissingCodecError(_missing_codec_message(uid), path=path)
    else:
        expected = _native_length(geometry)
        if actual < expected:
            raise UnreadableError(
                f"pixel data is truncated: {actual} of {expected} bytes", path=path
            )
    return geometry, uid


def render(ds: Dataset, frame: np.ndarray, options: RenderOptions = RenderOptions()) -> np.ndarray:
    """One frame of stored values -> the uint8 image a viewer would display.

    Grey frames give (rows, cols), colour and palette frames (rows, cols, 3). The grey
    pipeline is PS3.3 C.11: Modality LUT Sequence or Rescale Slope/Intercept, then VOI
    LUT Sequence or the first Window Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else
    a 0.5..99.5 percentile window; MONOCHROME1 is inverted after the VOI step so that
    what the modality calls bright stays bright. Enhanced multi-frame objects fall back
    to the shared (else first per-frame) functional groups for rescale and window.
    """
    if frame.ndim == 3 and frame.shape[-1] == 3:
        return _render_colour(ds, frame)
    if frame.ndim != 2:
        raise ValueError(f"a frame must be (rows, cols) or (rows, cols, 3), not {frame.shape}")
    palette = _palette(ds, options)
    if palette is not None:
        index = np.clip(frame.astype(np.int64) - palette.first, 0, len(palette.table) - 1)
        return np.asarray(palette.table[index], dtype=np.uint8)
    return _render_grey(ds, frame, None, options)


def darkest_value(
    ds: Dataset, frames: np.ndarray, options: RenderOptions = RenderOptions()
) -> int | tuple[int, int, int]:
    """The stored value that renders black, or as dark as the rendering allows.

    Grey data is rendered exactly as `render` does (the percentile window measured over
    all `frames`). The smallest and largest values present are tried first, so a value
    the image already uses wins when it is as dark as anything can be; otherwise every
    representable value (up to 16 bits stored; beyond that only the two extremes) is
    tried and, among the darkest, the one nearest the present range is kept, so a
    viewer's own min/max windowing of the redacted image barely shifts. RGB gives
    (0, 0, 0); a palette gives the index of its darkest colour.
    """
    _check_frames(frames)
    if frames.ndim == 4:
        return (0, 0, 0)
    low, high = _representable(ds, frames.dtype)
    palette = _palette(ds, options)
    if palette is not None:
        luma = palette.table.astype(np.float64) @ _LUMA
        return int(np.clip(palette.first + int(np.argmin(luma)), low, high))
    present = np.array([frames.min(), frames.max()], dtype=np.int64)
    if high - low <= _FULL_SEARCH_LIMIT:
        candidates = np.arange(low, high + 1, dtype=np.int64)
    else:
        candidates = np.array([low, high], dtype=np.int64)
    shades = _render_grey(ds, np.concatenate([present, candidates]), frames, options)
    darkest = shades.min()
    if shades[0] == darkest or shades[1] == darkest:
        return int(present[0] if shades[0] == darkest else present[1])
    dark = candidates[shades[2:] == darkest]
    distance = np.maximum(present[0] - dark, 0) + np.maximum(dark - present[1], 0)
    return int(dark[int(np.argmin(distance))])


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
    _check_frames(frames)
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


def frame_digest(frame: np.ndarray) -> bytes:
    """A short digest of one frame's stored values: identical frames are read once."""
    return hashlib.blake2b(frame.tobytes(), digest_size=16).digest()


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
    _check_frames(frames)
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
    low, high = _representable_range(bits_stored, values.dtype.kind == "i")
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        bits_stored = width

    if _transfer_syntax(ds) == ExplicitVRBigEndian or ds.original_encoding[1] is False:
        _convert_to_little_endian(ds)
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for tag in _OFFSET_TABLE_TAGS:
        if tag in ds:
            del ds[tag]

    if bits_allocated != 1 and values.dtype.itemsize in (1, 2):
        single = values if count > 1 else values[0]
        ds.set_pixel_data(single, photometric, bits_stored, generate_instance_uid=False)
    else:
        _set_pixel_data(ds, values, photometric, bits_stored, packed=bits_allocated == 1)
    if was_multiframe or count > 1:
        ds.NumberOfFrames = count


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


def _transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax from the file meta, else guessed from how the dataset was read."""
    meta = getattr(ds, "file_meta", None)
    uid = text_of(meta, "TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(uid)
    implicit, little = ds.original_encoding
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _geometry(ds: Dataset, path: str) -> _Geometry:
    values: dict[str, int] = {}
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        values[keyword] = _positive(ds, keyword, path)
    bits_allocated = values["BitsAllocated"]
    if bits_allocated not in (1, 8, 16, 32):
        raise UnreadableError(f"Bits Allocated {bits_allocated} is not supported", path=path)
    bits_stored = _positive(ds, "BitsStored", path) if "BitsStored" in ds else bits_allocated
    return _Geometry(
        rows=values["Rows"],
        columns=values["Columns"],
        samples=_positive(ds, "SamplesPerPixel", path) if "SamplesPerPixel" in ds else 1,
        frames=frame_count(ds),
        bits_allocated=bits_allocated,
        bits_stored=min(bits_stored, bits_allocated),
        signed=_us(ds, "PixelRepresentation") == 1,
        photometric=text_of(ds, "PhotometricInterpretation"),
    )


def _positive(ds: Dataset, keyword: str, path: str) -> int:
    """A required positive integer attribute, or UnreadableError naming the keyword."""
    value = _raw_us(ds, keyword)
    if value is None:
        try:
            value = int(ds.get(keyword))
        except (TypeError, ValueError):
            value = 0
    if value <= 0:
        raise UnreadableError(f"image pixel attribute {keyword} is missing or invalid", path=path)
    return value


def _us(ds: Dataset, keyword: str) -> int | None:
    """A US attribute from its raw bytes, else as pydicom reads it."""
    value = _raw_us(ds, keyword)
    return ds.get(keyword) if value is None else value


def _raw_us(ds: Dataset, keyword: str) -> int | None:
    """A US value straight from a little-endian raw element, sparing its conversion."""
    tag = tag_for_keyword(keyword)
    elem = ds._dict.get(tag) if tag is not None else None  # type: ignore[call-overload]
    if (
        isinstance(elem, RawDataElement)
        and elem.VR == "US"
        and elem.is_little_endian
        and isinstance(elem.value, bytes)
        and len(elem.value) == 2
    ):
        return int.from_bytes(elem.value, "little")
    return None


def _native_length(geometry: _Geometry) -> int:
    """Bytes of native pixel data the attributes promise (YBR_FULL_422 is subsampled)."""
    bits = geometry.rows * geometry.columns * geometry.samples * geometry.frames
    bits *= geometry.bits_allocated
    length = -(-bits // 8)
    if geometry.photometric == "YBR_FULL_422":
        length = length // 3 * 2
    return length


def _one_line(exc: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _normalise_values(arr: Array, geometry: _Geometry) -> Array:
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


def _check_frames(frames: Array) -> None:
    if frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3):
        return
    raise ValueError(
        f"frames must be (frames, rows, cols) or (frames, rows, cols, 3), not {frames.shape}"
    )


def _region(box: Box, rows: int, columns: int) -> tuple[slice, slice] | None:
    """The box clipped to the image as (row slice, column slice); None when nothing is left."""
    top, bottom = max(box.top, 0), min(box.bottom, rows)
    left, right = max(box.left, 0), min(box.right, columns)
    if top >= bottom or left >= right:
        return None
    return slice(top, bottom), slice(left, right)


def _representable_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def _representable(ds: Dataset, dtype: np.dtype[Any]) -> tuple[int, int]:
    width = dtype.itemsize * 8
    bits = min(int(ds.get("BitsStored") or width), width)
    return _representable_range(bits, dtype.kind == "i")


def _render_colour(ds: Dataset, frame: Array) -> Array:
    """RGB stored values -> 8-bit RGB, scaling anything other than 8 stored bits."""
    width = frame.dtype.itemsize * 8
    bits = min(int(ds.get("BitsStored") or width), width)
    if frame.dtype == np.uint8 and bits == 8:
        return frame.copy()
    scaled = frame.astype(np.float64) * (255.0 / ((1 << bits) - 1))
    return np.asarray(np.clip(np.rint(scaled), 0, 255), dtype=np.uint8)


def _render_grey(
    ds: Dataset, values: Array, reference: Array | None, options: RenderOptions
) -> Array:
    """Stored grey values -> uint8 through modality, VOI and MONOCHROME1 inversion.

    `reference` is what a percentile window is measured on; None means `values` itself.
    A large integer frame is rendered through a table of its distinct stored values:
    the same arithmetic per value, done once per value instead of once per pixel.
    """
    whole = reference is None
    source = values if reference is None else reference
    if values.dtype.kind in "iu" and values.size >= _TABLE_MIN_PIXELS:
        low, high = int(values.min()), int(values.max())
        if (high - low + 1) * _PIXELS_PER_ENTRY <= values.size:
            domain = np.arange(low, high + 1, dtype=np.int64)
            table = _shades(ds, domain, source, whole, options)
            index = values - values.dtype.type(low) if values.dtype.kind == "u" else values - low
            rendered: Array = table[index]
            return rendered
    return _shades(ds, values, source, whole, options)


def _shades(
    ds: Dataset,
    values: Array,
    reference: Array,
    whole: bool,
    options: RenderOptions,
) -> Array:
    """`_render_grey` on `values`; a percentile window, if one is needed, is measured on
    all of `reference` when `whole`, else on a sample of it."""

    def measured() -> Array:
        return _modality(ds, reference if whole else _sample(reference), options)

    modality = _modality(ds, values, options)
    shade = _voi(ds, modality, measured, options)
    if options.invert_monochrome1 and ds.get("PhotometricInterpretation") == "MONOCHROME1":
        shade = 255.0 - shade
    return np.asarray(np.clip(np.rint(shade), 0, 255), dtype=np.uint8)


def _sample(values: Array) -> Array:
    flat = values.reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLES)
    return np.asarray(flat[::step])


def _modality(ds: Dataset, values: Array, options: RenderOptions) -> Array:
    """Stored values -> modality values (e.g. Hounsfield units) as float64."""
    if options.modality_lut == "off":
        return values.astype(np.float64)
    lut = _first_lut(ds, "ModalityLUTSequence")
    if lut is not None:
        return lut.apply(values).astype(np.float64)
    source = _module_source(
        ds, "PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")
    )
    slope = _number(source, "RescaleSlope")
    intercept = _number(source, "RescaleIntercept")
    if slope is None and intercept is None:
        if options.modality_lut == "on":
            raise UnreadableError(
                "render option modality_lut='on' but the dataset has no Modality LUT "
                "Sequence or Rescale Slope/Intercept"
            )
        return values.astype(np.float64)
    result: Array = values.astype(np.float64) * (1.0 if slope is None else slope)
    return result + (intercept or 0.0)


def _voi(
    ds: Dataset, values: Array, reference: Callable[[], Array], options: RenderOptions
) -> Array:
    """Modality values -> display shades 0..255 (float) through the VOI step."""
    if options.voi != "off":
        lut = _first_lut(ds, "VOILUTSequence")
        if lut is not None:
            top = max((1 << lut.bits) - 1, int(lut.table.max()), 1)
            return lut.apply(values).astype(np.float64) * (255.0 / top)
        window = _window(ds)
        if window is not None:
            return _apply_window(values, window)
        if options.voi == "on":
            raise UnreadableError(
                "render option voi='on' but the dataset has no usable VOI LUT Sequence or "
                "Window Center/Width"
            )
    return _percentile_window(values, reference())


def _apply_window(values: Array, window: _Window) -> Array:
    """PS3.3 C.11.2.1.2 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID)."""
    if window.function == "SIGMOID":
        with np.errstate(over="ignore"):
            result: Array = 255.0 / (1.0 + np.exp(-4.0 * (values - window.center) / window.width))
        return result
    if window.function == "LINEAR_EXACT":
        center, width = window.center, window.width
    else:
        center, width = window.center - 0.5, window.width - 1.0
    if width <= 0:
        return np.where(values <= center, 0.0, 255.0)
    return np.clip(((values - center) / width + 0.5) * 255.0, 0.0, 255.0)


def _percentile_window(values: Array, reference: Array) -> Array:
    """Map the reference's 0.5..99.5 percentiles (else its min..max) onto 0..255."""
    if reference.size == 0:
        return np.zeros(values.shape)
    low, high = (float(v) for v in np.percentile(reference, _PERCENTILES))
    if high <= low:
        low, high = float(reference.min()), float(reference.max())
    if high <= low:
        return np.where(values <= low, 0.0, 255.0)
    return np.clip((values - low) * (255.0 / (high - low)), 0.0, 255.0)


def _window(ds: Dataset) -> _Window | None:
    """The first Window Center/Width pair, if present and valid for its function."""
    source = _module_source(ds, "FrameVOILUTSequence", ("WindowCenter", "WindowWidth"))
    center = _number(source, "WindowCenter")
    width = _number(source, "WindowWidth")
    if center is None or width is None:
        return None
    function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    if width < (1.0 if function == "LINEAR" else np.finfo(float).tiny):
        return None
    return _Window(center, width, function)


def _module_source(ds: Dataset, group: str, keywords: tuple[str, ...]) -> Dataset:
    """`ds` if it has any of `keywords`, else the shared or first per-frame group item."""
    if any(keyword in ds for keyword in keywords):
        return ds
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence)
        if not items:
            continue
        inner = items[0].get(group)
        if inner and any(keyword in inner[0] for keyword in keywords):
            item: Dataset = inner[0]
            return item
    return ds


def _number(ds: Dataset, keyword: str) -> float | None:
    """The first value of a numeric attribute, or None when absent, empty or not finite."""
    value = ds.get(keyword)
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _first_lut(ds: Dataset, keyword: str) -> _Lut | None:
    items = ds.get(keyword)
    if not items:
        return None
    item = items[0]
    descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
    if descriptor is None or data is None:
        return None
    return _make_lut(descriptor, data, _little_endian(ds))


def _make_lut(descriptor: Any, data: Any, little_endian: bool) -> _Lut | None:
    """Build a LUT from a descriptor (entries, first mapped, bits) and its data.

    Data may be US values or OW bytes; OW holding exactly one byte per entry is 8-bit.
    The first-mapped value may have been read as US when it is really SS, or vice versa;
    entries of 0 mean 65536.
    """
    parsed = _descriptor(descriptor)
    if parsed is None:
        return None
    entries, first, bits = parsed
    if isinstance(data, bytes | bytearray):
        width = 1 if len(data) in (entries, entries + 1) else 2
        dtype = np.dtype("u1") if width == 1 else np.dtype("<u2" if little_endian else ">u2")
        table = np.frombuffer(data[: len(data) - len(data) % width], dtype=dtype)
    elif isinstance(data, int):
        table = np.array([data])
    else:
        table = np.asarray(list(data))
    table = table[:entries].astype(np.int64)
    if table.size == 0:
        return None
    return _Lut(first, table, bits)


def _descriptor(descriptor: Any) -> tuple[int, int, int] | None:
    """LUT Descriptor as (entries, first mapped value, bits); 0 or SS-negative entries fixed."""
    try:
        entries, first, bits = (int(v) for v in list(descriptor)[:3])
    except (TypeError, ValueError):
        return None
    if entries <= 0:
        entries += 1 << 16
    return entries, first, bits


def _little_endian(ds: Dataset) -> bool:
    uid = _transfer_syntax(ds)
    return bool(uid.is_little_endian) if uid.is_transfer_syntax else True


@dataclass(frozen=True)
class _Palette:
    """8-bit RGB colours indexed by stored value minus `first`."""

    first: int
    table: Array


def _palette(ds: Dataset, options: RenderOptions) -> _Palette | None:
    """The palette to colour a PALETTE COLOR image with, or None to render it as grey."""
    if ds.get("PhotometricInterpretation") != _PALETTE or options.palette == "off":
        return None
    palette = _load_palette(ds)
    if palette is None and options.palette == "on":
        raise UnreadableError("render option palette='on' but the palette LUTs are missing")
    return palette


def _load_palette(ds: Dataset) -> _Palette | None:
    """Red/green/blue palette LUTs as one (entries, 3) uint8 table.

    pydicom's `apply_color_lut` is used only for segmented palettes: for plain ones it
    indexes through a uint8 array, which wraps for 8-bit palettes with over 256 entries.
    16-bit palettes whose entries all fit in 8 bits (a common encoder mistake) are read
    as 8-bit.
    """
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    parsed = None if descriptor is None else _descriptor(descriptor)
    if parsed is None:
        return None
    entries, first, _ = parsed
    little = _little_endian(ds)
    channels: list[Array] = []
    if "RedPaletteColorLookupTableData" in ds:
        for colour in ("Red", "Green", "Blue"):
            data = ds.get(f"{colour}PaletteColorLookupTableData")
            lut = None if data is None else _make_lut(descriptor, data, little)
            if lut is None:
                return None
            channels.append(lut.table)
        if len({c.size for c in channels}) != 1:
            return None
        table = np.stack(channels, axis=-1)
    elif "SegmentedRedPaletteColorLookupTableData" in ds:
        try:
            table = apply_color_lut(np.arange(first, first + entries), ds)[..., :3]
        except (ValueError, AttributeError, IndexError):
            return None
        table = table.astype(np.int64)
    else:
        return None
    if table.max() > 255:
        table = table >> 8
    return _Palette(first, table.astype(np.uint8))


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
