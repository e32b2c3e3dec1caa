"""Where text is: a learned text-line detector (PP-OCR's DB network) run on the CPU.

The network gives a per-pixel text probability; connected areas above a threshold are
text lines, each grown back to the line's full extent (DB's "unclip") and returned as
an axis-aligned box with the network's mean probability inside it.

Two properties of this network on medical images drive the filters below:

- on an image with no text at all, it may call a whole textured area (a knee, a chest)
  one giant "line". Real burned-in lines are thin, so an area taller than a text line
  can be on this image, or covering a large share of it, is not a line;
- its weights ship inside the `rapidocr` wheel, so nothing is downloaded: the model file
  is found by the package's location, without importing the package's own code.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deid.boxes import Box
from deid.errors import DetectorUnavailableError

MODEL = "PP-OCRv6_det_small.onnx"
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
_THRESHOLD = 0.3  # pixel probability from which a pixel belongs to a line
_LEAST_SCORE = 0.5  # mean probability inside a line for it to count
_UNCLIP = 1.5  # DB's growth of the shrunk text kernel back to the whole line
_LARGE_SIDE = 1280  # px: larger images (radiographs) are searched shrunk ...
_LONG_SIDE = 960  # ... to this long side: their text is large enough to be found there
_SMALL_SIDE = 320  # px: images this small are searched enlarged twice
_GREY_SIDE = 640  # px: ... and grey images up to this size
_THREADED_PIXELS = 1 << 19  # searched images this large use two threads
_LEAST_HEIGHT = 4.0  # px: a line lower than this cannot be read by anyone
_MAX_SHARE = 0.1  # a "line" covering more of the image than this is a textured area
_LONG = 3.0  # ... unless it is this many times longer than high, as lines of text are


@dataclass(frozen=True)
class Line:
    """A text line the detector found: its bounds, the network's score, its height.

    `height` is the short side of the line's rotated rectangle, in image pixels.
    """

    box: Box
    score: float
    height: float


def max_line_height(height: int, width: int) -> float:
    """The tallest text line, in pixels, that an image of this size carries.

    A line, its margin included, is at most about a third of the image's short side
    (a 512 px CT prints lines of 8 to 30 px; a test card, words a sixth of its height),
    never less than 32 px. Taller areas are the network's answer to texture with no
    text at all; what passes is still only covered once it is read as text.
    """
    return max(32.0, 0.35 * min(height, width))


def search_scale(height: int, width: int, *, grey: bool = False) -> float:
    """The factor an image is resized by before the network sees it.

    Small images are enlarged twice; so are grey images up to `_GREY_SIDE` (CT and MR
    slices, whose text is small and often grey on grey: the network finds such lines
    at twice the size, not at their own).
    """
    long_side = max(height, width)
    if long_side > _LARGE_SIDE:
        return _LONG_SIDE / long_side
    if long_side <= _SMALL_SIDE or (grey and long_side <= _GREY_SIDE):
        return 2.0
    return 1.0


def find_lines(
    image: np.ndarray, *, scale: float | None = None, tallest: float | None = None
) -> list[Line]:
    """Text lines in a rendered uint8 grey (H, W) or RGB (H, W, 3) image.

    `scale` overrides `search_scale` (a cheaper first look passes a smaller one), and
    `tallest` overrides `max_line_height` (a crop passes its whole image's).
    Boxes are in the image's pixels, clipped to it. Raises `DetectorUnavailableError`
    when the model cannot be loaded and TypeError for anything but a uint8 image.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError(f"expected a uint8 (H, W) or (H, W, 3) image, not {image.dtype}")
    height, width = image.shape[:2]
    if min(height, width) < 8:
        return []
    factor = search_scale(height, width, grey=image.ndim == 2) if scale is None else scale
    probability, fx, fy = _probability(image, factor)
    limit = max_line_height(height, width) if tallest is None else tallest
    return _lines(probability, fx, fy, height, width, limit)


def _probability(image: np.ndarray, factor: float) -> tuple[np.ndarray, float, float]:
    """The network's text probability map, and the scale from image to map per axis."""
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    height, width = image.shape[:2]
    rh, rw = max(32, round(height * factor)), max(32, round(width * factor))
    shrink = rh < height
    resized = cv2.resize(
        rgb, (rw, rh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    ph, pw = -rh % 32, -rw % 32  # the network needs sides in multiples of 32
    if ph or pw:
        resized = cv2.copyMakeBorder(resized, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    batch = ((resized.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1)[None]
    session = _session(threads=2 if rh * rw >= _THREADED_PIXELS else 1)
    out = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return np.asarray(out[0, 0, :rh, :rw]), rw / width, rh / height


def _lines(
    probability: np.ndarray, fx: float, fy: float, height: int, width: int, tallest: float
) -> list[Line]:
    mask = cv2.dilate((probability > _THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[Line] = []
    for contour in contours:
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < 2:
            continue
        x, y, bw, bh = cv2.boundingRect(contour)
        inside = np.zeros((bh, bw), dtype=np.uint8)
        cv2.fillPoly(inside, [contour - [x, y]], 1)
        score = float(probability[y : y + bh, x : x + bw][inside > 0].mean())
        if score < _LEAST_SCORE:
            continue
        grow = rw * rh * _UNCLIP / (2 * (rw + rh))
        box_points = cv2.boxPoints(((cx, cy), (rw + 2 * grow, rh + 2 * grow), angle))
        corners = np.asarray(box_points, dtype=np.float64) / np.array([fx, fy])
        side_a = float(np.hypot(*(corners[1] - corners[0])))
        side_b = float(np.hypot(*(corners[2] - corners[1])))
        line_height = min(side_a, side_b)
        if not _LEAST_HEIGHT <= line_height <= tallest:
            continue
        # a pixel's centre sits half a pixel in: one more on each side holds every edge
        low, high = np.floor(corners.min(axis=0)) - 1, np.ceil(corners.max(axis=0)) + 1
        box = Box(
            max(0, int(low[0])),
            max(0, int(low[1])),
            min(width, int(high[0])),
            min(height, int(high[1])),
        )
        if box.area <= 0:
            continue
        if box.area > _MAX_SHARE * height * width and max(side_a, side_b) < _LONG * line_height:
            continue
        found.append(Line(box, score, line_height))
    found.sort(key=lambda line: (line.box.top, line.box.left))
    return found


def model_path(name: str) -> Path:
    """A model file shipped in the `rapidocr` wheel, found without importing its code."""
    spec = importlib.util.find_spec("rapidocr")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise DetectorUnavailableError(
        f"text model {name} not found: install the 'rapidocr' package (pip install deid does)"
    )


@cache
def _session(threads: int) -> Any:
    """One ONNX Runtime session per thread count, loaded on first use."""
    return load_session(MODEL, threads)


def load_session(name: str, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session for a shipped model, quiet and with `threads` threads."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DetectorUnavailableError(
            "onnxruntime is not installed: pip install deid installs it"
        ) from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(model_path(name)), options, providers=["CPUExecutionProvider"]
        )
    except DetectorUnavailableError:
        raise
    except Exception as exc:  # onnxruntime raises its own types for a bad model file
        raise DetectorUnavailableError(f"text model {name} could not be loaded") from exc
