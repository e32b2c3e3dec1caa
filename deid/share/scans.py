"""One DICOM series into the images a person sends: key slices, windowed, text covered.

Each chosen file goes through the stages `inspect` runs (read, classify, decode, plan
the tags: `pipeline.look`), then the text search of `anonymize` runs on each image as
it will be sent, in each of its windows, and every line it covers is blacked out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deid import pipeline, pixels
from deid.faces import cover_faces, find_faces
from deid.pixelwork import find_text
from deid.settings import Settings
from deid.share import montage as grid
from deid.share.items import Cover, Source
from deid.share.series import Pick, Series, pick
from deid.share.windows import Window, choose

# Visible-light photographs stored as DICOM may show a face; radiology renders do not.
_PHOTOGRAPHIC = frozenset({"XC", "GM", "ES"})


@dataclass
class Made:
    """One image made for the bundle, before it is encoded: pixels, facts, covers.

    `covers` are in `image`'s pixels; `photo` says a camera made it (JPEG suits it);
    `dropped` names the metadata blocks a photo carried, all left behind;
    `faces_searched` says the face detector looked at it (photographs only);
    `notes` say where the image is shown otherwise than asked (a CT window asked for an
    MR), so the command can tell the user instead of ignoring the option in silence.
    """

    stem: str
    image: np.ndarray
    source: Source
    label: str
    photo: bool = False
    facts: list[str] = field(default_factory=list)
    window: str | None = None
    covers: list[Cover] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    faces_searched: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScanOptions:
    """How a series is shown: how many slices, as separate images or one grid, which
    window, and how faces in photographic objects are covered."""

    slices: int = 1
    montage: bool = False
    window: str = "auto"
    faces: str = "blur"


@dataclass
class _Tile:
    image: np.ndarray
    window: Window
    covers: list[Cover]
    pick: int
    order: int
    label: str = ""


def series_images(
    series: Series, number: int, settings: Settings, options: ScanOptions
) -> list[Made]:
    """The images of series `number` (1-based): one per pick and window, or one grid.

    Raises DeidError for a file of the series that cannot be read or searched: a
    series goes whole or not at all.
    """
    count = options.slices if options.slices > 1 or not options.montage else 9
    picks = pick(series, count)
    windows = choose(series.modality, series.body_part, options.window)
    notes = list(dict.fromkeys(w.note for w in windows if w.note))
    tiles: list[_Tile] = []
    facts: list[str] = []
    searched = False
    place = {(p.slice.path, p.frame): i for i, p in enumerate(picks)}
    for path, frames in _by_file(picks):
        chosen = replace(settings, frames=_spec(frames), detect_text=False, context=True)
        work = pipeline.look(path, chosen)
        assert work.pixels is not None and work.note is not None
        facts = facts or work.note.splitlines()[1:]
        fixed = work.pixels.fixed
        for window in windows:
            windowed = replace(settings, render=replace(settings.render, window=window.value))
            rendered: dict[int, np.ndarray] = {}
            found = find_text(
                work.ds,
                work.pixels.frames,
                windowed,
                work.originals,
                work.where,
                frames,
                rendered,
                fixed,
                keep=frames,
            )
            for frame in frames:
                covered = [r for r in [*fixed, *found[frame]] if r.decision == "redact"]
                image = pixels.black_out(rendered[frame], [r.box for r in covered])
                covers = [Cover(r.box, f"text: {r.reason}") for r in covered]
                if _photographic(image, series):
                    image, faces = _faces(image, options.faces)
                    covers += faces
                pick_index = place[(path, frame)]
                tiles.append(_Tile(image, window, covers, pick_index, windows.index(window)))
                searched = searched or _photographic(image, series)
    _label(tiles, picks)
    stem = f"series{number}"
    label = f"series {number}"
    if options.montage:
        tiles.sort(key=lambda t: (t.order, t.pick))
        grid_image = _montage(tiles, windows, stem, label, facts)
        grid_image.faces_searched = searched
        grid_image.notes = notes
        return [grid_image]
    many = len(picks) > 1
    made = []
    for tile in sorted(tiles, key=lambda t: (t.pick, t.order)):
        name = stem + (f"-{tile.pick + 1}of{len(picks)}" if many else "")
        name += f"-{tile.window.name}" if tile.window.name != "auto" else ""
        made.append(
            Made(
                name,
                tile.image,
                "series",
                label,
                facts=facts,
                window=tile.window.name,
                covers=tile.covers,
                faces_searched=searched,
                notes=notes,
            )
        )
    return made


def _photographic(image: np.ndarray, series: Series) -> bool:
    """A visible-light photograph stored as DICOM, where a face may show."""
    return image.ndim == 3 and series.modality in _PHOTOGRAPHIC


def _faces(image: np.ndarray, how: str) -> tuple[np.ndarray, list[Cover]]:
    faces = find_faces(image)
    if not faces:
        return image, []
    covered = cover_faces(image, faces, "black" if how == "black" else "blur")
    return covered, [Cover(f.box, "face") for f in faces]


def _spec(frames: Sequence[int]) -> str:
    return ",".join(str(f + 1) for f in frames)


def _by_file(picks: Sequence[Pick]) -> list[tuple[Path, list[int]]]:
    """The picks grouped by file, in pick order, so each file is decoded once."""
    grouped: dict[Path, list[int]] = {}
    for chosen in picks:
        grouped.setdefault(chosen.slice.path, []).append(chosen.frame)
    return [(path, sorted(set(frames))) for path, frames in grouped.items()]


def _label(tiles: list[_Tile], picks: Sequence[Pick]) -> None:
    """Name each tile by its window and place: `lung slice 3 of 9`, `frame 12 of 30`."""
    for tile in tiles:
        place = picks[tile.pick].label if len(picks) > 1 else ""
        window = tile.window.name if tile.window.name != "auto" else ""
        tile.label = " ".join(w for w in (window, place) if w)


def _montage(
    tiles: list[_Tile], windows: Sequence[Window], stem: str, label: str, facts: list[str]
) -> Made:
    """One labelled grid: a row of slices per window (a CT chest shows lung and
    mediastinum), the covers mapped into the grid."""
    rows = len(windows) if len(windows) > 1 else None
    image, placed = grid.montage_placed([(t.image, t.label) for t in tiles], rows=rows)
    covers = [
        Cover(place.map(cover.box), cover.why)
        for tile, place in zip(tiles, placed, strict=True)
        for cover in tile.covers
    ]
    names = "+".join(w.name for w in windows if w.name != "auto")
    return Made(
        stem + "-montage",
        image,
        "series",
        label,
        facts=facts,
        window=names or None,
        covers=covers,
    )
