"""`deid.share.montage`: a labelled grid of slices."""

from __future__ import annotations

import numpy as np
import pytest

from deid.boxes import Box
from deid.share.montage import Placement, montage, montage_placed

SIDE = 128


def _grey(value: int, rows: int = 64, cols: int = 64) -> np.ndarray:
    return np.full((rows, cols), value, dtype=np.uint8)


def test_tiles_fill_rows_with_labels_in_bands_above_them() -> None:
    tiles = [(_grey(40 + 40 * i), f"slice {i + 1} of 4") for i in range(4)]
    image, placed = montage_placed(tiles, columns=2, tile_side=SIDE)
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.shape[1] >= 2 * SIDE and image.shape[0] >= 2 * SIDE
    # Row by row: tiles 0 and 1 share a top, tiles 0 and 2 a left.
    assert placed[0].top == placed[1].top < placed[2].top == placed[3].top
    assert placed[0].left == placed[2].left < placed[1].left == placed[3].left
    for i, place in enumerate(placed):
        assert (place.width, place.height) == (SIDE, SIDE)  # scaled up to fill the cell
        area = image[place.top : place.top + SIDE, place.left : place.left + SIDE]
        assert (area == 40 + 40 * i).all()  # the anatomy untouched by any label
        band = image[place.top - SIDE // 8 : place.top, place.left : place.left + SIDE]
        assert (band > 200).sum() > 20  # the label's ink, white, above the tile
    # Black gaps between the cells and around them.
    assert (image[:, : placed[0].left] == 0).all()
    gap = image[:, placed[0].left + SIDE : placed[1].left]
    assert gap.shape[1] > 0 and (gap == 0).all()


def test_tiles_keep_their_aspect_and_are_centred() -> None:
    tall = _grey(200, rows=100, cols=50)
    wide = _grey(100, rows=30, cols=90)
    image, (a, b) = montage_placed([(tall, "lung"), (wide, "mediastinum")], tile_side=SIDE)
    assert (a.width, a.height) == (64, 128)
    assert (b.width, b.height) == (128, 43)
    cell_left = a.left - (SIDE - 64) // 2
    assert (image[a.top : a.top + 128, cell_left : a.left] == 0).all()  # black beside it
    assert (image[a.top : a.top + 128, a.left : a.left + 64] == 200).all()
    assert (image[b.top : b.top + 43, b.left : b.left + 128] == 100).all()


def test_one_colour_tile_makes_the_grid_rgb() -> None:
    colour = np.zeros((32, 32, 3), dtype=np.uint8)
    colour[..., 0] = 250
    image, (grey, red) = montage_placed([(_grey(90), "a"), (colour, "b")], tile_side=SIDE)
    assert image.ndim == 3 and image.shape[2] == 3
    assert (image[grey.top + 5, grey.left + 5] == [90, 90, 90]).all()
    assert (image[red.top + 5, red.left + 5] == [250, 0, 0]).all()


def test_rows_set_the_grid_so_each_window_gets_a_row() -> None:
    tiles = [(_grey(50), f"lung slice {i + 1} of 3") for i in range(3)]
    tiles += [(_grey(150), f"mediastinum slice {i + 1} of 3") for i in range(3)]
    image, placed = montage_placed(tiles, rows=2, tile_side=SIDE)
    tops = [p.top for p in placed]
    assert tops[:3] == [tops[0]] * 3 and tops[3:] == [tops[3]] * 3 and tops[3] > tops[0]
    assert np.array_equal(montage(tiles, rows=2, tile_side=SIDE), image)
    assert np.array_equal(montage(tiles, columns=3, tile_side=SIDE), image)


def test_without_labels_there_is_no_band() -> None:
    image, (place,) = montage_placed([(_grey(70), "")], tile_side=SIDE)
    assert place.top == place.left  # the gap alone above the tile
    assert image.shape == (SIDE + 2 * place.top, SIDE + 2 * place.left)


def test_a_long_label_is_shrunk_to_its_tile() -> None:
    image, (place,) = montage_placed([(_grey(0), "mediastinum slice 12 of 30 " * 3)], tile_side=64)
    ink = np.nonzero(image[: place.top, :] > 127)
    assert ink[1].size and ink[1].min() >= place.left and ink[1].max() < place.left + 64


def test_the_default_grid_is_near_square() -> None:
    _, placed = montage_placed([(_grey(9), "x")] * 5, tile_side=32)
    assert len({p.top for p in placed}) == 2 and len({p.left for p in placed}) == 3


def test_placement_maps_boxes_into_the_grid() -> None:
    place = Placement(left=10, top=20, width=128, height=64, source_width=256, source_height=128)
    assert place.map(Box(0, 0, 256, 128)) == Box(10, 20, 138, 84)
    assert place.map(Box(3, 3, 5, 5)) == Box(11, 21, 13, 23)  # rounded outwards


@pytest.mark.parametrize(
    ("tiles", "kwargs"),
    [
        ([], {}),
        ([(np.zeros((4, 4), np.float32), "x")], {}),
        ([(np.zeros((4, 4, 4), np.uint8), "x")], {}),
        ([(np.zeros((4, 4), np.uint8), "x")] * 5, {"columns": 2, "rows": 2}),
        ([(np.zeros((4, 4), np.uint8), "x")], {"columns": 0}),
        ([(np.zeros((4, 4), np.uint8), "x")], {"tile_side": 8}),
    ],
)
def test_bad_input_is_refused(tiles: list[tuple[np.ndarray, str]], kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        montage(tiles, **kwargs)  # type: ignore[arg-type]
