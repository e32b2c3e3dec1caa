"""Rectangles on an image: where text was found and where pixels get blacked out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Box:
    """A pixel rectangle; `right` and `bottom` are exclusive, like a numpy slice."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def padded(self, pad: int, width: int, height: int) -> Box:
        """Grow by `pad` pixels on every side, clipped to a `width` x `height` image."""
        return Box(
            max(0, self.left - pad),
            max(0, self.top - pad),
            min(width, self.right + pad),
            min(height, self.bottom + pad),
        )

    def scaled(self, factor: float) -> Box:
        """Map a box found on a resized image back, rounding outwards."""
        return Box(
            int(self.left / factor),
            int(self.top / factor),
            -int(-self.right // factor),
            -int(-self.bottom // factor),
        )

    def overlaps(self, other: Box) -> bool:
        return not (
            self.right <= other.left
            or other.right <= self.left
            or self.bottom <= other.top
            or other.bottom <= self.top
        )

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(
            min(self.left, other.left),
            min(self.top, other.top),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
        )

    def shared_area(self, other: Box) -> int:
        """The area the two boxes share."""
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        return max(0, width) * max(0, height)

    def contains(self, other: Box) -> bool:
        return (
            self.left <= other.left
            and self.top <= other.top
            and self.right >= other.right
            and self.bottom >= other.bottom
        )

    def shifted(self, origin: Box) -> Box:
        """A box given in a crop's pixels, in the pixels of the image the crop sits at."""
        return Box(
            self.left + origin.left,
            self.top + origin.top,
            self.right + origin.left,
            self.bottom + origin.top,
        )

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


def bounding(boxes: Iterable[Box]) -> Box:
    """The smallest box holding all of `boxes` (at least one)."""
    items = list(boxes)
    return Box(
        min(b.left for b in items),
        min(b.top for b in items),
        max(b.right for b in items),
        max(b.bottom for b in items),
    )
