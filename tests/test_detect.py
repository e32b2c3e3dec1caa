"""The text candidate detector: finds overlay text without OCR, and little else.

Images are drawn with Pillow onto seeded anatomy-like backgrounds; every assertion is
about pixels (is the drawn text inside a candidate box or not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from conftest import anatomy
from PIL import Image, ImageDraw, ImageFont

from deid import detect
from deid.boxes import Box
from deid.detect import Candidate, find_candidates, label, stroke_contrast


def draw(image: np.ndarray, xy: tuple[int, int], words: str, size: int, fill: object) -> np.ndarray:
    """Burn text into `image` in place; the mask of the pixels it touches."""
    font = ImageFont.load_default(size=size)
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text(xy, words, font=font, fill=fill)  # type: ignore[arg-type]
    image[...] = np.asarray(picture)
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).text(xy, words, font=font, fill=255)
    return np.asarray(mask) > 0


def inside(mask: np.ndarray, candidates: Sequence[Candidate], share: float = 1.0) -> bool:
    """Whether at least `share` of the text's pixels lie in the candidates' boxes."""
    hit = np.zeros(mask.shape, dtype=bool)
    for c in candidates:
        hit[c.box.top : c.box.bottom, c.box.left : c.box.right] = True
    return float(hit[mask].mean()) >= share


Maker = Callable[[], tuple[np.ndarray, np.ndarray]]


def _on_anatomy(seed: int, xy: tuple[int, int], words: str, size: int, fill: int) -> Maker:
    """A maker of grey anatomy (of `seed`) with `words` burned in, and the text's mask."""

    def make() -> tuple[np.ndarray, np.ndarray]:
        image = anatomy(seed=seed)
        return image, draw(image, xy, words, size, fill)

    return make


_white_corner = _on_anatomy(1, (10, 10), "DOE JOHN 4471923", 14, 255)
_grey_corner = _on_anatomy(2, (12, 470), "2023-08-17", 16, 170)
_white_over_anatomy = _on_anatomy(3, (180, 230), "SMITH ANNA", 18, 255)
_dark_over_anatomy = _on_anatomy(4, (190, 300), "MRN 4471923", 18, 10)


def _yellow_on_blue_banner() -> tuple[np.ndarray, np.ndarray]:
    grey = anatomy(480, 640, seed=5) // 2
    image = np.stack([grey, grey, grey], axis=-1)
    image[0:34, :] = (20, 30, 90)
    return image, draw(image, (12, 8), "DOE JOHN  ACC A4471923", 16, (255, 230, 0))


def _blue_on_black() -> tuple[np.ndarray, np.ndarray]:
    image = np.stack([anatomy(seed=6) // 3] * 3, axis=-1)
    return image, draw(image, (40, 460), "17-AUG-2023", 18, (40, 90, 255))


@pytest.mark.parametrize(
    "make",
    [
        _white_corner,
        _grey_corner,
        _white_over_anatomy,
        _dark_over_anatomy,
        _yellow_on_blue_banner,
        _blue_on_black,
    ],
    ids=["white", "grey", "white-over-anatomy", "dark-over-anatomy", "yellow-banner", "blue"],
)
def test_text_is_found_as_likely_candidates(make: Maker) -> None:
    image, mask = make()
    likely = [c for c in find_candidates(image) if c.wide and c.score >= 0.7]
    assert inside(mask, likely, share=0.98)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_text_free_anatomy_has_no_likely_line(seed: int) -> None:
    image = anatomy(seed=seed)
    assert not [c for c in find_candidates(image) if c.wide and c.score >= 0.7]


def test_large_image_small_text_is_found_quickly_enough() -> None:
    image = anatomy(1250, 1000, seed=13)
    mask = draw(image, (30, 1200), "DOE^JOHN 1961-04-12", 12, 255)
    assert inside(mask, find_candidates(image, least_score=0.7), share=0.98)


def test_large_text_is_found_at_the_coarser_level() -> None:
    image = anatomy(seed=14)
    mask = draw(image, (20, 20), "PA", 110, 255)
    assert inside(mask, find_candidates(image), share=0.95)


def test_stroke_contrast_keeps_thin_strokes_and_drops_wide_shapes() -> None:
    image = np.zeros((40, 40), np.uint8)
    image[5:35, 5:8] = 200  # a 3 px stroke
    image[5:35, 20:35] = 200  # a 15 px block
    contrast = stroke_contrast(image, 3)
    assert (contrast[5:35, 5:8] == 200).all()
    assert (contrast[10:30, 24:31] == 0).all()


def test_label_finds_8_connected_groups() -> None:
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:4] = True
    mask[3, 4] = True  # touches the first group diagonally
    mask[6:9, 8:11] = True
    groups = label(mask)
    boxes = sorted(Box(*map(int, b)) for b in groups.boxes)
    assert boxes == [Box(1, 1, 5, 4), Box(8, 6, 11, 9)]
    assert sorted(groups.counts.tolist()) == [7, 9]


def test_crop_for_ocr_is_dark_text_on_white() -> None:
    image, mask = _white_over_anatomy()
    (best, *_) = [c for c in find_candidates(image) if c.wide]
    crop, origin = detect.ocr_crop(detect.planes(image), best)
    text_pixels = mask[origin.top : origin.bottom, origin.left : origin.right]
    assert crop.shape == text_pixels.shape
    assert np.median(crop[~text_pixels]) > 230  # the background turned white
    assert np.median(crop[text_pixels]) < 128  # the strokes turned dark


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.float32), np.zeros((32, 32, 4), np.uint8)],
    ids=["float", "rgba"],
)
def test_only_display_images_are_searched(image: np.ndarray) -> None:
    with pytest.raises(TypeError):
        find_candidates(image)


def test_word_ending_in_a_foot_is_held_whole() -> None:
    # Letters of small text join into one long group, of which only the stems are kept:
    # the foot of a final L lies past the last stem and must still be in the box.
    image = np.zeros((200, 400), np.uint8)
    mask = draw(image, (20, 60), "TOTAL", 14, 230)
    assert inside(mask, find_candidates(image), share=1.0)


def test_letters_inside_the_box_of_a_long_curve_are_not_cut_up() -> None:
    cells = np.zeros((30, 120), bool)
    for x in range(120):  # a shallow arc, two cells thick, spanning rows 2..24
        y = 2 + round(22 * ((x - 60) / 60) ** 2)
        cells[y : y + 2, x] = True
    cells[10:20, 50:52] = True  # a C: its stem, top and bottom bars, apart from the arc
    cells[10:12, 50:56] = True
    cells[18:20, 50:56] = True
    groups = label(cells)
    boxes = {Box(*map(int, b)) for b in detect._unthreaded(cells, groups, 3)}
    near = {b for b in boxes if b.overlaps(Box(48, 8, 58, 22))}
    assert near == {Box(50, 10, 56, 20)}


def test_a_line_seen_mostly_inside_another_widens_it() -> None:
    taken = Candidate(Box(100, 50, 200, 70), 0, "dark", 20, 6, 1.0)
    wider = Candidate(Box(88, 52, 200, 68), 0, "bright", 16, 8, 0.9)
    (only,) = detect._distinct([taken, wider])
    assert only.box == Box(88, 50, 200, 70)
