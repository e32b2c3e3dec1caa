"""The inspection preview: the rendered image with each text region outlined.

Red boxes will be blacked out, green ones are kept markers. The preview still shows the
original pixels, so it is for the operator's eyes only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from deid.text.policy import Region

_COLOURS = {"redact": (255, 40, 40), "keep": (40, 220, 40)}


def draw_regions(image: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy of `image` (grey or RGB uint8) with every region's box outlined."""
    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(1, max(picture.size) // 400)
    for region in regions:
        box = region.box
        draw.rectangle(
            (box.left, box.top, box.right - 1, box.bottom - 1),
            outline=_COLOURS.get(region.decision, (255, 255, 0)),
            width=width,
        )
    return np.asarray(picture)
