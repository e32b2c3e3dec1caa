"""Covers grown along their own line, and only there."""

from __future__ import annotations

import numpy as np
from conftest import anatomy, draw_text

from deid.boxes import Box
from deid.text.extend import extend


def ink_box(ink: np.ndarray) -> Box:
    ys, xs = np.nonzero(ink)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_a_cover_that_stops_short_grows_over_the_rest_of_its_line() -> None:
    ramp = np.tile(np.linspace(0, 230, 512), (512, 1)).astype(np.uint8)
    image, ink = draw_text(ramp, [("MRN 1234567", (120, 300), 16, 160)])
    whole = ink_box(ink)
    half = Box(whole.left + whole.width // 2, whole.top - 3, whole.right + 3, whole.bottom + 3)
    grown = extend(image, half)
    assert grown.contains(Box(whole.left, half.top, whole.right, half.bottom))
    assert grown.left >= whole.left - 8


def test_a_cover_with_nothing_beside_it_does_not_grow_over_anatomy() -> None:
    image, ink = draw_text(anatomy(), [("DOE", (230, 250), 18, 255)])
    whole = ink_box(ink)
    box = Box(whole.left - 3, whole.top - 3, whole.right + 3, whole.bottom + 3)
    assert extend(image, box) == box
