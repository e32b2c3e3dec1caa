"""`context.txt`: the safe facts of each image, to paste beside the bundle.

Only what `deid.context` lets through (modality, body part, view, laterality, age band,
sex) and what `share` did, so a reader does not mistake a cover for a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deid.output import Transaction
from deid.share.items import SharedImage

NAME = "context.txt"
BLACK_BOXES = "Black boxes cover text that was removed for privacy; they are not findings."
FACES = "Blurred or blacked-out patches cover faces, removed for privacy."


def text(images: Sequence[SharedImage]) -> str:
    """The note: one paragraph per image, then what the covers mean."""
    lines = ["De-identified medical images, prepared for sharing.", ""]
    for image in images:
        what = image.label + (f", {image.window} window" if _named(image.window) else "")
        lines.append(f"{image.name}: {'; '.join([what, *image.facts])}")
    lines += ["", BLACK_BOXES]
    if any(c.why == "face" for i in images for c in i.covers):
        lines.append(FACES)
    return "\n".join(lines) + "\n"


def _named(window: str | None) -> bool:
    return bool(window) and window != "auto"


def write(folder: Path, images: Sequence[SharedImage]) -> Path:
    """Write (or rewrite) the note in `folder`, whole or not at all."""
    path = folder / NAME
    txn = Transaction(overwrite=True)
    txn.add(path, text(images).encode("utf-8"))
    txn.commit()
    return path
