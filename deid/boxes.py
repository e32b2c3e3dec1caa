"""Rectangles on an image: where text was found and where pixels get blacked out."""

from __future__ import annotations

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

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]
