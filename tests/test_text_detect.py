"""The learned detector and recogniser on drawn text, and what they must not find."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import anatomy, ct_slice, draw_text, make_dataset

from deid.text import detect, first_look_scale, read


def test_a_drawn_line_is_found_and_read() -> None:
    image, ink = draw_text(ct_slice(), [("MRN 4471923", (30, 20), 18, 255)])
    lines = detect.find_lines(image)
    ys, xs = np.nonzero(ink)
    (line,) = [ln for ln in lines if ln.box.top <= ys.min() and ln.box.bottom > ys.max()]
    assert line.box.left <= xs.min() and line.box.right > xs.max()
    (reading,) = read.read_lines(image, [line.box])
    assert reading.text.replace(" ", "") == "MRN4471923"
    assert reading.confidence > 0.9 and len(reading.confidences) == len(reading.text)


@pytest.mark.parametrize("image", [anatomy(), ct_slice(), np.zeros((64, 64), np.uint8)])
def test_images_without_text_give_no_line(image: np.ndarray) -> None:
    assert detect.find_lines(image) == []


def test_only_display_images_are_searched() -> None:
    with pytest.raises(TypeError):
        detect.find_lines(np.zeros((32, 32), np.float32))


@pytest.mark.parametrize(
    ("size", "scale"), [((2500, 2000), 960 / 2500), ((512, 512), 1.0), ((128, 128), 2.0)]
)
def test_search_scale(size: tuple[int, int], scale: float) -> None:
    assert detect.search_scale(*size) == pytest.approx(scale)


@pytest.mark.parametrize(
    ("modality", "extra", "cheaper"),
    [
        ("CT", {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
        ("MR", {}, True),
        ("CT", {"ImageType": ["DERIVED", "SECONDARY"]}, False),
        ("CT", {"BurnedInAnnotation": "YES"}, False),
        ("CR", {}, False),
        ("US", {}, False),
    ],
)
def test_a_cheaper_first_look_only_where_text_is_rare(
    modality: str, extra: dict[str, object], cheaper: bool
) -> None:
    ds = make_dataset(np.zeros((512, 512), np.uint16), modality=modality, extra=extra)
    assert (first_look_scale(ds) is not None) is cheaper


@pytest.mark.parametrize(("side", "scale"), [(512, 1.0), (256, 1.0), (1024, None)])
def test_the_first_look_sees_every_pixel(side: int, scale: float | None) -> None:
    """The first look is at the image's own size where the full search enlarges it,
    and there is none where the full search already looks at that size."""
    ds = make_dataset(np.zeros((side, side), np.uint16), modality="MR")
    assert first_look_scale(ds) == scale


@pytest.mark.parametrize("size", [9, 10, 12])
def test_the_first_look_finds_small_annotations(size: int) -> None:
    ds = make_dataset(np.zeros((512, 512), np.uint16), extra={"ImageType": ["ORIGINAL"]})
    image, _ = draw_text(ct_slice(), [("DOE, JOHN 03/14/1952", (20, 470), size, 200)])
    assert detect.find_lines(image, scale=first_look_scale(ds))
