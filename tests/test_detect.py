"""The text candidate detector: finds overlay text without OCR, and little else.

Images are drawn with Pillow onto seeded anatomy-like backgrounds; every assertion is
about pixels (is the drawn text inside a candidate box or not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import anatomy, ct_slice
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


def _ring() -> np.ndarray:
    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    r = ((y - 256) / 174) ** 2 + ((x - 256) / 220) ** 2
    return np.asarray((r > 0.82) & (r < 0.9))


def test_a_clipped_ring_is_a_band_and_large_white_text_is_not() -> None:
    image = ct_slice()
    text = draw(image, (30, 16), "DOE JOHN 4471923", 40, 255)
    found = detect.saturated_bands(image)
    assert found is not None
    box, local = found
    band = np.zeros(image.shape, dtype=bool)
    band[box.top : box.bottom, box.left : box.right] = local
    assert band[_ring()].mean() > 0.98
    assert not band[text].any()
    assert detect.saturated_bands(anatomy(seed=1)) is None


@pytest.mark.parametrize("xy", [(325, 125), (340, 125), (355, 125)])
def test_text_crossing_a_clipped_ring_is_not_lost_to_it(xy: tuple[int, int]) -> None:
    # Where the ring is thinner than the top-hat it shows as a thick stroke; the letters
    # it crosses used to join it into one group too tall for a line, and were lost.
    # Most of what shows is now found in lines (the cover is carried through the ring).
    image = ct_slice()
    mask = draw(image, xy, "DOE 15:09:06", 14, 255) & ~_ring()
    lines = [c for c in find_candidates(image) if c.wide and c.score >= 0.45]
    assert inside(mask, lines, share=0.6)


def test_levelled_crop_draws_a_line_evenly_over_black_and_tissue() -> None:
    image = np.zeros((100, 320), np.uint8)
    grain = np.random.default_rng(3).normal(0, 10, (100, 160))
    image[:, 160:] = np.clip(140 + grain, 0, 255).astype(np.uint8)
    mask = draw(image, (60, 40), "DOE JOHN 4471923", 16, 255)
    (line, *_) = [c for c in find_candidates(image) if c.wide]
    grey_planes = detect.planes(image)
    halves = []
    for view in (detect.ocr_crop, detect.levelled_crop):
        page, origin = view(grey_planes, line)
        text = mask[origin.top : origin.bottom, origin.left : origin.right]
        split = 160 - origin.left
        left, right = text.copy(), text.copy()
        left[:, split:], right[:, :split] = False, False
        halves.append((float(np.median(page[left])), float(np.median(page[right]))))
    (clean_black, clean_tissue), (level_black, level_tissue) = halves
    assert clean_tissue - clean_black > 60  # the top-hat view fades over tissue
    assert level_black < 80 and level_tissue < 80  # the levelled one does not


def test_gaps_seen_dark_widen_a_bright_line_only_along_it() -> None:
    taken = Candidate(Box(100, 50, 200, 70), 0, "bright", 20, 6, 1.0)
    gaps = Candidate(Box(150, 40, 170, 70), 0, "dark", 20, 1, 0.6)
    (only,) = detect._distinct([taken, gaps])
    assert only.box == Box(100, 50, 200, 70)


def test_large_images_are_searched_on_threads_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = anatomy(1100, 1000, seed=5)
    draw(image, (60, 40), "DOE^JOHN 1960-01-01", 24, 250)
    draw(image, (500, 700), "MRN 4471923", 18, 30)
    assert image.size >= detect._THREADED_PIXELS
    threaded = find_candidates(image)
    monkeypatch.setattr(detect, "_THREADED_PIXELS", image.size + 1)
    assert find_candidates(image) == threaded
    assert threaded


@pytest.mark.parametrize("shape", [(40, 40), (7, 30), (100, 3)])
@pytest.mark.parametrize("reach", [1, 3])
@pytest.mark.parametrize("op", [np.maximum, np.minimum])
def test_square_filter_is_the_windowed_extreme_up_to_every_edge(
    shape: tuple[int, int], reach: int, op: Any
) -> None:
    image = np.random.default_rng(reach).integers(0, 256, shape).astype(np.uint8)
    expected = np.empty_like(image)
    for i in range(shape[0]):
        for j in range(shape[1]):
            window = image[max(0, i - reach) : i + reach + 1, max(0, j - reach) : j + reach + 1]
            expected[i, j] = window.max() if op is np.maximum else window.min()
    assert np.array_equal(detect.square_filter(image, reach, op), expected)
