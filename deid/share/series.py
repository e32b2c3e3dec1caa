"""Series: the DICOM series of a patient's disc, a folder or single files, and their key
slices.

`gather` walks the inputs, follows any DICOMDIR (whose file names are matched without
regard to case: a disc is written upper-case and often mounted lower-case;
`deid.share.dicomdir`), reads each DICOM header without its pixel data and groups the
images by series, each in the order of its slices along the patient. `pick` chooses
the slices to show: the middle one, or a few evenly spaced.

Nothing here keeps a description, a name or a UID where it could be printed: a series is
known by its number, its modality and a body part from a fixed vocabulary
(`deid.share.bodypart`), and files by their names relative to the input given.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.uid import UID

from deid.classify import kind_of
from deid.errors import DeidError, NotDicomError, TooLargeError, UsageError
from deid.inputs import shown
from deid.limits import Declared, Limits, check_declared
from deid.pixels import frame_count
from deid.reader import read
from deid.share.bodypart import body_part, header_text, header_value
from deid.share.dicomdir import Candidate, followed, is_dicomdir_name, walk

__all__ = [
    "Gathered",
    "Order",
    "Pick",
    "Series",
    "Slice",
    "body_part",
    "gather",
    "pick",
]

_DIRECTORY = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: a DICOMDIR
_SYSTEM_FILES = frozenset(["thumbs.db", "desktop.ini", "autorun.inf"])
Order = Literal["position", "number", "name"]


@dataclass(frozen=True)
class Slice:
    """One image file of a series: where it is, the name it is shown by (relative to the
    input given), and how many frames it holds."""

    path: Path = field(repr=False)
    name: str
    frames: int = 1


@dataclass
class Series:
    """The images of one series, in order along the patient.

    `number` (1, 2, ...) is how the series is known in everything printed; `study`
    numbers the studies the same way. `body_part` is BodyPartExamined, else a part read
    from the study and series descriptions, always from a fixed vocabulary (CHEST,
    HEAD, KNEE...). `order` tells how the slices were ordered: by position along the
    slice normal, by InstanceNumber, or by file name. The Series Instance UID is kept
    only to group files (`_uid`, never shown).
    """

    number: int
    study: int
    modality: str | None
    body_part: str | None
    slices: list[Slice]
    order: Order = "name"
    series_number: int | None = None
    _uid: str = field(default="", repr=False, compare=False)

    @property
    def label(self) -> str:
        """How the series is named in messages: "series 2"."""
        return f"series {self.number}"

    @property
    def images(self) -> int:
        """Images to choose from: the frames of a lone multi-frame file, else the files."""
        if len(self.slices) == 1:
            return self.slices[0].frames
        return len(self.slices)


@dataclass(frozen=True)
class Pick:
    """One image chosen from a series: a slice and a frame index (0 for single-frame
    files), with its place among the series' images (`number` of `total`, 1-based)
    counted in `unit`: "frame" in a lone multi-frame file, "slice" in a series ordered
    by position, "image" otherwise."""

    slice: Slice
    frame: int
    number: int = 1
    total: int = 1
    unit: str = "slice"

    @property
    def label(self) -> str:
        """Words to draw beside the image: "slice 3 of 9", "frame 12 of 30"."""
        return f"{self.unit} {self.number} of {self.total}"


@dataclass
class Gathered:
    """What the inputs hold.

    `series`: the DICOM image series, numbered. `others`: files that are not DICOM, to
    be tried as photos, each shown by its `names` entry (relative to the input that
    held it). `problems`: (shown name, one-line reason) for DICOM files that
    cannot be read, and for DICOMDIR indexes that cannot be read or list missing files.
    `ignored`: (shown name, reason) for files deliberately left out: DICOM objects that
    hold no image (reports, key-object notes), system files, and files on a disc beside
    a DICOMDIR that are not DICOM (a viewer program's icons are no photos).
    """

    series: list[Series] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)
    names: dict[Path, str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Header:
    """What one DICOM file's header says, for grouping and ordering."""

    path: Path
    name: str
    series_uid: str
    study_uid: str
    modality: str | None
    body_part: str | None
    frames: int
    instance: int | None
    series_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    sop_uid: str


def gather(inputs: Sequence[Path], *, limits: Limits | None = None) -> Gathered:
    """The series, other files and problems of `inputs` (files or folders).

    Folders are walked (links to folders not followed, links out of the folder given
    not read). A DICOMDIR, given or found, is followed: the files it references are
    taken, matched without regard to case, and the DICOMDIR itself is never an image;
    one that cannot be read leaves its folder to be searched by content. Headers are
    read without pixel data. Raises UsageError for an input that does not exist.
    """
    found = Gathered()
    candidates: list[Candidate] = []
    for item in inputs:
        if not item.exists():
            raise UsageError(f"input not found: {shown(item.name or str(item))}")
        if item.is_file():
            if is_dicomdir_name(item.name):
                # The disc given by its index: the folder holding it is the input.
                candidates.append(Candidate(item, shown(item.name), item.parent.resolve()))
                candidates.extend(walk(item.parent, found.ignored))
            else:
                candidates.append(
                    Candidate(item, shown(item.name), item.resolve().parent, given=True)
                )
        else:
            candidates.extend(walk(item, found.ignored))

    headers: list[_Header] = []
    plain: list[Candidate] = []  # not DICOM
    discs: list[Path] = []  # folders holding a DICOMDIR
    seen: set[Path] = set()
    queue = list(reversed(candidates))
    while queue:
        candidate = queue.pop()
        real = candidate.path.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            with warnings.catch_warnings():  # pydicom's warnings quote the values
                warnings.simplefilter("ignore")
                ds = read(candidate.path, stop_before_pixels=True, limits=limits)
                header = (
                    None
                    if _sop_class(ds) == _DIRECTORY
                    else _header(ds, candidate, found, limits or Limits())
                )
        except NotDicomError:
            if is_dicomdir_name(candidate.path.name):
                found.problems.append((candidate.name, "a DICOMDIR that is no DICOM file"))
            else:
                plain.append(candidate)
            continue
        except DeidError as exc:
            found.problems.append((candidate.name, _one_line(exc.message)))
            continue
        except Exception as exc:  # fail closed on anything unforeseen, without its text
            found.problems.append((candidate.name, f"unreadable header ({type(exc).__name__})"))
            continue
        if _sop_class(ds) == _DIRECTORY:
            discs.append(candidate.path.parent)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                refs = followed(ds, candidate, found.problems)
            queue.extend(reversed(refs))
            continue
        if header is not None:
            headers.append(header)

    # A disc is the folder of a DICOMDIR, read or not (a damaged one is still a disc).
    discs += [c.path.parent for c in candidates if is_dicomdir_name(c.path.name)]
    disc_roots = {d.resolve() for d in discs}
    given = {c.path.resolve() for c in candidates if c.given}
    for candidate in plain:
        if candidate.path.resolve() in given:  # a file named on its own is meant to be sent
            found.others.append(candidate.path)
            found.names[candidate.path] = candidate.name
        elif candidate.path.name.startswith(".") or candidate.path.name.lower() in _SYSTEM_FILES:
            found.ignored.append((candidate.name, "a system file"))
        elif any(candidate.path.resolve().is_relative_to(d) for d in disc_roots):
            found.ignored.append(
                (candidate.name, "not DICOM, on a disc beside a DICOMDIR: not taken as a photo")
            )
        else:
            found.others.append(candidate.path)
            found.names[candidate.path] = candidate.name
    found.series = _group(headers)
    return found


def pick(series: Series, count: int = 1) -> list[Pick]:
    """`count` images of `series`, evenly spaced: the middle one for 1; otherwise the
    images at (i + 0.5) / count of the way along, never the very ends. A lone
    multi-frame file is picked from by frame; otherwise by slice, each multi-frame
    slice showing its middle frame. Fewer images than `count`: all of them."""
    if count < 1:
        raise UsageError(f"the number of slices to show must be at least 1, not {count}")
    if not series.slices:
        return []
    if len(series.slices) == 1 and series.slices[0].frames > 1:
        only = series.slices[0]
        total = only.frames
        return [Pick(only, i, i + 1, total, "frame") for i in _spread(total, count)]
    total = len(series.slices)
    unit = "slice" if series.order == "position" else "image"
    return [
        Pick(series.slices[i], series.slices[i].frames // 2, i + 1, total, unit)
        for i in _spread(total, count)
    ]


def _spread(total: int, count: int) -> list[int]:
    """Indices of `count` of `total` items at (i + 0.5) / count of the way along."""
    if count >= total:
        return list(range(total))
    return [int((i + 0.5) * total / count) for i in range(count)]


# --- headers ------------------------------------------------------------------------------


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    value = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    return str(value or "").strip()


def _one_line(message: str) -> str:
    """A reason on one line, without the file's path (the shown name says which)."""
    return " ".join(message.split()) or "unreadable"


def _header(ds: Dataset, candidate: Candidate, found: Gathered, limits: Limits) -> _Header | None:
    """What `ds` says for grouping; None (and a note) for an object with no image."""
    kind = kind_of(_sop_class(ds))
    if kind is not None:
        found.ignored.append((candidate.name, f"holds no image ({kind.replace('-', ' ')})"))
        return None
    if "Rows" not in ds or "Columns" not in ds:
        meta = getattr(ds, "file_meta", None)
        declared = [_sop_class(ds), str(meta.get("MediaStorageSOPClassUID", "")) if meta else ""]
        if any("Image Storage" in UID(uid.strip()).name for uid in declared):
            found.problems.append(
                (candidate.name, "truncated or corrupt: an image object without its image")
            )
        else:
            found.ignored.append((candidate.name, "holds no image"))
        return None
    problem = _pixel_problem(ds, candidate.path, limits)
    if problem:
        found.problems.append((candidate.name, problem))
        return None
    modality = header_text(ds, "Modality").upper() or None
    if modality is not None and not re.fullmatch(r"[A-Z0-9_ ]{1,16}", modality):
        modality = None
    return _Header(
        path=candidate.path,
        name=candidate.name,
        series_uid=header_text(ds, "SeriesInstanceUID"),
        study_uid=header_text(ds, "StudyInstanceUID"),
        modality=modality,
        body_part=body_part(ds),
        frames=frame_count(ds),
        instance=_integer(ds, "InstanceNumber"),
        series_number=_integer(ds, "SeriesNumber"),
        position=_triple(ds, "ImagePositionPatient"),
        orientation=_numbers(ds, "ImageOrientationPatient", 6),
        sop_uid=header_text(ds, "SOPInstanceUID"),
    )


def _pixel_problem(ds: Dataset, path: Path, limits: Limits) -> str | None:
    """What the header alone shows wrong with the image, checked without its pixels:
    more than the limits allow, or native pixel data longer than the whole file (an
    interrupted copy); None when nothing shows."""
    declared = Declared.of(ds)
    if declared is None:
        return None
    try:
        check_declared(declared, limits, str(path))
    except TooLargeError as exc:
        return _one_line(exc.message)
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID") or "")) if meta is not None else UID("")
    native = not syntax or (syntax.is_transfer_syntax and not syntax.is_compressed)
    try:
        size = path.stat().st_size
    except OSError:
        return "the file went away while it was read"
    if native and size < declared.native_bytes:
        return "truncated: the file is shorter than the pixel data its header declares"
    return None


def _integer(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(header_text(ds, keyword))
    except ValueError:
        try:
            return int(float(header_text(ds, keyword)))
        except (ValueError, OverflowError):
            return None


def _numbers(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = header_value(ds, keyword)
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(abs(n) < float("inf") for n in numbers):
        return None
    return numbers


def _triple(ds: Dataset, keyword: str) -> tuple[float, float, float] | None:
    numbers = _numbers(ds, keyword, 3)
    return None if numbers is None else (numbers[0], numbers[1], numbers[2])


# --- grouping and ordering -----------------------------------------------------------------


def _group(headers: list[_Header]) -> list[Series]:
    """Headers -> numbered series, each ordered along the patient: studies in the order
    of their first file names, series by SeriesNumber within a study, then by name."""
    groups: dict[str, list[_Header]] = {}
    for index, header in enumerate(headers):
        key = header.series_uid or f"\0lone {index}"  # no UID: a series of its own
        groups.setdefault(key, []).append(header)
    built: list[tuple[str, float, str, Series]] = []
    for key, members in groups.items():
        ordered, order = _ordered(_unique(members))
        first = ordered[0]
        series = Series(
            number=0,
            study=0,
            modality=_common(h.modality for h in ordered),
            body_part=_common(h.body_part for h in ordered),
            slices=[Slice(h.path, h.name, h.frames) for h in ordered],
            order=order,
            series_number=first.series_number,
            _uid=key,
        )
        number = float(first.series_number) if first.series_number is not None else float("inf")
        built.append((first.study_uid or key, number, min(h.name for h in ordered), series))
    study_first: dict[str, str] = {}
    for study, _, name, _ in built:
        study_first[study] = min(study_first.get(study, name), name)
    built.sort(key=lambda b: (study_first[b[0]], b[0], b[1], b[2]))
    studies: dict[str, int] = {}
    out = []
    for number, (study, _, _, series) in enumerate(built, start=1):
        series.number = number
        series.study = studies.setdefault(study, len(studies) + 1)
        out.append(series)
    return out


def _unique(members: list[_Header]) -> list[_Header]:
    """One header per image: a disc may hold a copy of a file twice (same SOP Instance
    UID, number and position); a careless tool that gave every file one UID has not
    made them one image."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for header in sorted(members, key=lambda h: h.name):
        key = (header.sop_uid, header.instance, header.position, header.frames)
        if header.sop_uid and key in seen:
            continue
        seen.add(key)
        out.append(header)
    return out


def _common(values: Iterator[str | None]) -> str | None:
    """The most frequent non-empty value (the first of the ties), or None."""
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    return max(counts, key=lambda v: counts[v]) if counts else None


def _ordered(members: list[_Header]) -> tuple[list[_Header], Order]:
    """Slices along the slice normal when every one has a position (and the series an
    orientation), else by InstanceNumber when every one has one, else by name.

    Along the normal, the direction is the one the InstanceNumbers run in, when they
    are there, so "slice 1" is the one a viewer shows first."""
    by_name = sorted(members, key=lambda h: h.name)
    numbered = all(h.instance is not None for h in members)
    orientation = next((h.orientation for h in by_name if h.orientation), None)
    if orientation is not None and all(h.position is not None for h in members):
        row, col = orientation[:3], orientation[3:]
        normal = (
            row[1] * col[2] - row[2] * col[1],
            row[2] * col[0] - row[0] * col[2],
            row[0] * col[1] - row[1] * col[0],
        )

        def along(h: _Header) -> float:
            assert h.position is not None
            return sum(p * n for p, n in zip(h.position, normal, strict=True))

        ordered = sorted(by_name, key=lambda h: (along(h), h.instance or 0))
        if numbered and len(ordered) > 1:
            first, last = ordered[0].instance or 0, ordered[-1].instance or 0
            if first > last:
                ordered.reverse()
        return ordered, "position"
    if numbered:
        return sorted(by_name, key=lambda h: h.instance or 0), "number"
    return by_name, "name"
