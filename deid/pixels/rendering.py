"""Render stored values for display: what a radiologist's viewer shows.

`render` applies the DICOM greyscale pipeline (Modality LUT, VOI LUT or window,
MONOCHROME1 inversion) or the palette, giving the uint8 picture an OCR engine sees;
`darkest_value` asks the same pipeline which stored value shows as black. Rendering
never resizes, so a box found on a rendered frame addresses the same stored pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deid.errors import UnreadableError, UsageError
from deid.pixels.frames import Array, check_frames, representable_range
from deid.pixels.luts import Palette, first_lut, load_palette

__all__ = ["RenderOptions", "Switch", "darkest_of", "darkest_value", "render"]

Switch = Literal["on", "off", "if-present"]
_SWITCHES = ("on", "off", "if-present")

_PALETTE = "PALETTE COLOR"
_PERCENTILES = (0.5, 99.5)
PERCENTILE_SAMPLES = 1_000_000
_FULL_SEARCH_LIMIT = 1 << 16
# Render through a table of stored values when a frame has this many pixels per entry.
_TABLE_MIN_PIXELS = 1 << 16
_PIXELS_PER_ENTRY = 4
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class RenderOptions:
    """Rendering steps as explicit switches, each on, off or if-present.

    "if-present" applies a step when the dataset carries what it needs; "on" insists and
    raises `UnreadableError` when it does not; "off" skips it. Without a usable VOI step
    (absent or off) the frame is windowed on its own 0.5..99.5 percentiles, so every
    frame still fills the grey range.

    `window`, a (center, width) pair in modality values (Hounsfield units for CT), is a
    window chosen by the caller: applied LINEAR (PS3.3 C.11.2.1.2) after the modality
    step in place of the file's own VOI LUT or window, whatever `voi` says. Colour and
    palette images ignore it.
    """

    modality_lut: Switch = "if-present"
    voi: Switch = "if-present"
    palette: Switch = "if-present"
    invert_monochrome1: bool = True
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("modality_lut", "voi", "palette"):
            value = getattr(self, name)
            if value not in _SWITCHES:
                raise UsageError(
                    f"render option {name} must be 'on', 'off' or 'if-present', not {value!r}"
                )
        if self.window is not None:
            try:
                center, width = (float(v) for v in self.window)
            except (TypeError, ValueError):
                raise UsageError(
                    f"render option window must be (center, width), not {self.window!r}"
                ) from None
            if not (np.isfinite(center) and np.isfinite(width) and width >= 1.0):
                raise UsageError(
                    "render option window needs a finite center and a width of at least 1, "
                    f"not {self.window!r}"
                )
            object.__setattr__(self, "window", (center, width))


@dataclass(frozen=True)
class _Window:
    """Window center and width with the VOI LUT Function that shapes the ramp."""

    center: float
    width: float
    function: str


def render(ds: Dataset, frame: np.ndarray, options: RenderOptions = RenderOptions()) -> np.ndarray:
    """One frame of stored values -> the uint8 image a viewer would display.

    Grey frames give (rows, cols), colour and palette frames (rows, cols, 3). The grey
    pipeline is PS3.3 C.11: Modality LUT Sequence or Rescale Slope/Intercept, then the
    window of `options.window` if given, else VOI LUT Sequence or the first Window
    Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else a 0.5..99.5 percentile window;
    MONOCHROME1 is inverted after the VOI step so that what the modality calls bright
    stays bright. Enhanced multi-frame objects fall back to the shared (else first
    per-frame) functional groups for rescale and window.
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
    check_frames(frames)
    if frames.ndim == 4:
        return (0, 0, 0)
    if _palette(ds, options) is not None:
        return darkest_of(ds, frames.dtype, (0, 0), frames[:0], options)
    present = (int(frames.min()), int(frames.max()))
    return darkest_of(ds, frames.dtype, present, _sample(frames), options)


def darkest_of(
    ds: Dataset,
    dtype: np.dtype[Any],
    present: tuple[int, int],
    sample: Array,
    options: RenderOptions = RenderOptions(),
) -> int:
    """`darkest_value` of grey or palette frames known only by their dtype, smallest
    and largest stored value, and the strided sample of their values a percentile
    window is measured on: frames seen one at a time give the same answer."""
    low, high = _representable(ds, dtype)
    palette = _palette(ds, options)
    if palette is not None:
        luma = palette.table.astype(np.float64) @ _LUMA
        return int(np.clip(palette.first + int(np.argmin(luma)), low, high))
    present_values = np.array(present, dtype=np.int64)
    if high - low <= _FULL_SEARCH_LIMIT:
        candidates = np.arange(low, high + 1, dtype=np.int64)
    else:
        candidates = np.array([low, high], dtype=np.int64)
    values = np.concatenate([present_values, candidates])
    shades = _shades(ds, values, sample, True, options)
    darkest = shades.min()
    if shades[0] == darkest or shades[1] == darkest:
        return int(present_values[0] if shades[0] == darkest else present_values[1])
    dark = candidates[shades[2:] == darkest]
    distance = np.maximum(present[0] - dark, 0) + np.maximum(dark - present[1], 0)
    return int(dark[int(np.argmin(distance))])


def _representable(ds: Dataset, dtype: np.dtype[Any]) -> tuple[int, int]:
    width = dtype.itemsize * 8
    bits = min(int(ds.get("BitsStored") or width), width)
    return representable_range(bits, dtype.kind == "i")


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
    step = max(1, flat.size // PERCENTILE_SAMPLES)
    return np.asarray(flat[::step])


def _modality(ds: Dataset, values: Array, options: RenderOptions) -> Array:
    """Stored values -> modality values (e.g. Hounsfield units) as float64."""
    if options.modality_lut == "off":
        return values.astype(np.float64)
    lut = first_lut(ds, "ModalityLUTSequence")
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
    """Modality values -> display shades 0..255 (float) through the VOI step: the
    caller's window if given, else the file's VOI LUT or window, else percentiles."""
    if options.window is not None:
        return _apply_window(values, _Window(*options.window, "LINEAR"))
    if options.voi != "off":
        lut = first_lut(ds, "VOILUTSequence")
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


def _palette(ds: Dataset, options: RenderOptions) -> Palette | None:
    """The palette to colour a PALETTE COLOR image with, or None to render it as grey."""
    if ds.get("PhotometricInterpretation") != _PALETTE or options.palette == "off":
        return None
    palette = load_palette(ds)
    if palette is None and options.palette == "on":
        raise UnreadableError("render option palette='on' but the palette LUTs are missing")
    return palette
