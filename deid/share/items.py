"""What the bundle holds: one record per image sent, never a covered value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from deid.boxes import Box

Source = Literal["series", "photo"]


@dataclass(frozen=True)
class Cover:
    """One covered area of a shared image, in that image's own pixels, and why."""

    box: Box
    why: str


@dataclass
class SharedImage:
    """One image of the bundle: its file name, what it shows, and what was covered.

    `label` names the source without its path ("series 2", "photo 1"); `facts` are the
    safe context lines of that image (modality, body part, view, age band, sex);
    `window` is the display window of a DICOM image ("lung"), if one was chosen;
    `faces_searched` says faces were looked for (photos), so the final check looks too.
    """

    name: str
    source: Source
    label: str
    facts: list[str] = field(default_factory=list)
    window: str | None = None
    covers: list[Cover] = field(default_factory=list)
    width: int = 0
    height: int = 0
    size: int = 0
    faces_searched: bool = False
