"""The frames of one image and the text regions found on each.

Text found on one frame is never stamped onto another; identical frames are read once.
Frames are decoded one at a time and let go: only the renders of frames shown in a
picture are kept, so a long cine costs the memory of a frame, not of the cine.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from deid import pixels, text
from deid.boxes import Box
from deid.settings import Settings


@dataclass
class PixelWork:
    """The frames of one image (decoded when read), the regions found on each, and
    kept renders.

    `fixed` regions apply to every frame; `found[i]` holds the text regions of frame i
    only, so text found on one frame is never stamped onto another.
    """

    frames: pixels.Frames
    fixed: list[text.Region]
    found: dict[int, list[text.Region]] = field(default_factory=dict)
    rendered: dict[int, np.ndarray] = field(default_factory=dict)

    def shown(self, ds: Dataset, index: int, options: pixels.RenderOptions) -> np.ndarray:
        """Frame `index` as displayed, rendered once for the text search and the PNG."""
        image = self.rendered.get(index)
        return pixels.render(ds, self.frames[index], options) if image is None else image

    def regions(self, index: int) -> list[text.Region]:
        return [*self.fixed, *self.found.get(index, [])]

    def boxes(self, index: int) -> list[Box]:
        return text.redaction_boxes(self.regions(index))


def find_text(
    ds: Dataset,
    frames: Sequence[np.ndarray],
    settings: Settings,
    phi: Mapping[str, str],
    where: str,
    search: Collection[int],
    rendered: dict[int, np.ndarray],
    fixed: Sequence[text.Region] = (),
    keep: Collection[int] = (),
) -> dict[int, list[text.Region]]:
    """Text regions of each frame in `search` (the `fixed` ones not included).

    Frames are taken one at a time, in order; identical frames are read once. Renders
    of the frames in `keep` are stored in `rendered`. Raises `LeakError` when text
    stays readable after redaction.
    """
    policy = settings.text_policy
    protected = text.ultrasound_image_regions(ds)
    first = text.first_look_scale(ds)
    by_digest: dict[bytes, list[text.Region]] = {}
    found: dict[int, list[text.Region]] = {}
    for index in sorted(search):
        frame = frames[index]
        digest = pixels.frame_digest(frame)
        if digest not in by_digest or index in keep:
            image = pixels.render(ds, frame, settings.render)
            if index in keep:
                rendered[index] = image
            if digest not in by_digest:
                by_digest[digest] = text.search_image(
                    image,
                    policy,
                    phi=phi,
                    fixed=fixed,
                    protected=protected,
                    where=where,
                    first_scale=first,
                )
        found[index] = by_digest[digest]
    return found


def prepare_pixels(
    ds: Dataset,
    path: str,
    settings: Settings,
    phi: Mapping[str, str],
    fixed: Sequence[text.Region] = (),
    keep: Collection[int] = (),
    search: Collection[int] | None = None,
) -> PixelWork:
    """Check the pixel data; find text, if asked, on the frames in `search` (default
    all), decoding each in turn."""
    frames = pixels.Frames(ds, path)
    work = PixelWork(frames, list(fixed))
    if settings.detect_text:
        wanted = range(len(frames)) if search is None else search
        work.found = find_text(ds, frames, settings, phi, path, wanted, work.rendered, fixed, keep)
    return work
