"""Box arithmetic shared by the text search, the redaction and the checks."""

from __future__ import annotations

import pytest

from deid.boxes import Box, bounding

A = Box(10, 20, 30, 40)


@pytest.mark.parametrize(
    ("other", "union", "shared", "contains"),
    [
        (Box(15, 25, 20, 30), Box(10, 20, 30, 40), 25, True),
        (Box(25, 35, 50, 60), Box(10, 20, 50, 60), 25, False),
        (Box(30, 40, 35, 45), Box(10, 20, 35, 45), 0, False),
        (Box(10, 20, 30, 40), Box(10, 20, 30, 40), 400, True),
    ],
)
def test_union_shared_area_and_containment(
    other: Box, union: Box, shared: int, contains: bool
) -> None:
    assert A.union(other) == other.union(A) == union
    assert A.shared_area(other) == other.shared_area(A) == shared
    assert A.contains(other) is contains


def test_shifted_places_a_crop_box_in_the_image() -> None:
    assert Box(1, 2, 3, 4).shifted(Box(100, 200, 500, 600)) == Box(101, 202, 103, 204)


def test_bounding_holds_every_box() -> None:
    boxes = [Box(5, 9, 6, 10), A, Box(0, 30, 2, 50)]
    assert bounding(boxes) == Box(0, 9, 30, 50)
    assert bounding(iter([A])) == A
