"""The bundle: every series and photo made safe, upload-ready, noted and checked.

Each image is written whole or not at all; one bad input never stops the others. The
final check is `deid verify` on the bundle (metadata, pixel text, faces), against the
headers of the DICOM files shown: an image it flags is taken out of the bundle. A word
read on a scan that matches nothing identifying stands only where the text detector
also sees a line.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from deid import verify
from deid.boxes import Box
from deid.errors import DeidError, ExitCode, OutputExistsError, UsageError
from deid.leak import Leak
from deid.output import Transaction
from deid.pixelcheck import OUTSIDE
from deid.settings import Settings
from deid.share import note
from deid.share.encode import encode, encoded_size, fit
from deid.share.items import Cover, SharedImage
from deid.share.photos import sniff_photo
from deid.share.pictures import photo_image
from deid.share.review import write_review
from deid.share.scans import Made, ScanOptions, series_images
from deid.share.series import Series, gather
from deid.text.detect import find_lines

DEFAULT_FOLDER = "deid-share"


@dataclass(frozen=True)
class ShareOptions:
    """What the bundle holds and how big its files may be."""

    scan: ScanOptions = field(default_factory=ScanOptions)
    max_side: int = 2048
    max_bytes: int = 4_000_000
    allow_documents: bool = False
    review: bool = False


@dataclass
class Sent:
    """Where one input went: its label, its outputs, and what was done to it.

    `notes` say where an option could not apply to it (a CT window asked for an MR
    series): one line each, naming no value of the input."""

    source: str
    outputs: list[str]
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """An input left out of the bundle, with its reason and exit code."""

    source: str
    reason: str
    exit_code: int


@dataclass
class Bundle:
    """The outcome of `share`: the folder, its images, and everything left out."""

    folder: Path
    images: list[SharedImage] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def series(self) -> int:
        return len({i.label for i in self.images if i.source == "series"})

    @property
    def photos(self) -> int:
        return len({i.label for i in self.images if i.source == "photo"})

    def line(self) -> str:
        """`4 images ready in DIR (2 series, 2 photos); nothing identifying found ...`."""
        count = len(self.images)
        parts = f"{self.series} series, {_plural(self.photos, 'photo')}"
        head = f"{_plural(count, 'image')} ready in {self.folder} ({parts})"
        if self.findings:
            return f"{head}; the final check found {_plural(len(self.findings), 'problem')}"
        return f"{head}; nothing identifying found by the final check"

    @property
    def exit_code(self) -> int:
        if self.findings:
            return int(ExitCode.LEAK_FOUND)
        codes = {p.exit_code for p in self.problems}
        if len(codes) == 1:
            return codes.pop()
        if codes:
            return int(ExitCode.MIXED_FAILURES)
        return int(ExitCode.OK) if self.images else int(ExitCode.NOT_DICOM)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def default_folder(parent: Path) -> Path:
    """A new folder in `parent`: `deid-share`, else `deid-share-2`, `-3` ..."""
    folder = parent / DEFAULT_FOLDER
    number = 2
    while folder.exists():
        folder = parent / f"{DEFAULT_FOLDER}-{number}"
        number += 1
    return folder


def _prepare(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError("the bundle folder is a file; give another --out", str(folder))
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputExistsError(
            "the bundle folder is not empty; give a new --out (or none for a new one)",
            str(folder),
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the bundle folder: {exc.strerror}", str(folder)) from None


def make_bundle(
    inputs: Sequence[Path],
    folder: Path,
    settings: Settings,
    options: ShareOptions = ShareOptions(),
    *,
    redact_paths: bool = False,
    on_sent: Callable[[Sent], None] | None = None,
) -> Bundle:
    """Make the bundle in `folder` (new or empty) from files, folders and discs.

    Messages name a photo relative to the input that held it, or by number with
    `redact_paths`; `on_sent` hears of each input as it is done.
    Raises DeidError only for the folder itself; every input's trouble is a Problem.
    Library warnings are silenced: they quote the values they complain about.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _make(inputs, folder, settings, options, redact_paths, on_sent)


def _make(
    inputs: Sequence[Path],
    folder: Path,
    settings: Settings,
    options: ShareOptions,
    redact_paths: bool,
    on_sent: Callable[[Sent], None] | None,
) -> Bundle:
    _prepare(folder)
    bundle = Bundle(folder)
    gathered = gather(inputs)
    bundle.problems += [
        Problem(name, reason, int(ExitCode.UNREADABLE)) for name, reason in gathered.problems
    ]
    shown_dicom: list[Path] = []

    def add(source: str, made: list[Made]) -> None:
        sent = Sent(source, [])
        for item in made:
            image = _write(folder, item, options)
            bundle.images.append(image)
            sent.outputs.append(str(folder / image.name))
        sent.done = _done(made)
        sent.notes = list(dict.fromkeys(n for m in made for n in m.notes))
        bundle.sent.append(sent)
        if on_sent is not None:
            on_sent(sent)

    for number, series in enumerate(gathered.series, 1):
        source = _series_source(series, number)
        try:
            made = series_images(series, number, settings, options.scan)
        except DeidError as exc:
            bundle.problems.append(Problem(source, exc.message, int(exc.exit_code)))
            continue
        shown_dicom += [s.path for s in series.slices]
        add(source, made)
    photos = 0
    for path in gathered.others:
        if sniff_photo(path) is None:
            bundle.skipped += 1
            continue
        photos += 1
        name = f"input #{photos}" if redact_paths else gathered.names[path]
        try:
            made_photo = photo_image(
                path,
                name,
                photos,
                settings.text_policy,
                max_side=options.max_side,
                faces=options.scan.faces,
                allow_documents=options.allow_documents,
            )
        except DeidError as exc:
            bundle.problems.append(Problem(name, exc.message, int(exc.exit_code)))
            continue
        add(name, [made_photo])
    note.write(folder, bundle.images)
    _final_check(bundle, shown_dicom, settings)
    if options.review and bundle.images:
        write_review(bundle.images, folder, note.text(bundle.images))
    return bundle


def _series_source(series: Series, number: int) -> str:
    what = " ".join(w for w in (series.modality, series.body_part or "") if w)
    count = f"{series.images} image{'' if series.images == 1 else 's'}"
    return f"series {number} ({', '.join(w for w in (what, count) if w)})"


def _done(made: list[Made]) -> list[str]:
    text = sum(1 for m in made for c in m.covers if c.why.startswith("text"))
    faces = sum(1 for m in made for c in m.covers if c.why == "face")
    done = []
    if text:
        done.append(f"{text} text line{'' if text == 1 else 's'} covered")
    if faces:
        done.append(f"{faces} face{'' if faces == 1 else 's'} covered")
    dropped = sorted({d for m in made for d in m.dropped})
    if dropped:
        done.append("metadata dropped: " + ", ".join(dropped))
    return done


def _write(folder: Path, made: Made, options: ShareOptions) -> SharedImage:
    """Cap, encode and write one image, all or nothing; its covers follow the resize
    (`encode` itself shrinks an image that no quality fits under the size cap)."""
    width = made.image.shape[1]
    data, ext = encode(fit(made.image, options.max_side), options.max_bytes, photo=made.photo)
    out_width, out_height = encoded_size(data)
    factor = out_width / width if width else 1.0
    covers = [
        Cover(c.box.scaled(1 / factor) if factor != 1.0 else c.box, c.why) for c in made.covers
    ]
    name = f"{made.stem}.{ext}"
    txn = Transaction()
    txn.add(folder / name, data)
    txn.commit()
    return SharedImage(
        name,
        made.source,
        made.label,
        facts=made.facts,
        window=made.window,
        covers=covers,
        width=out_width,
        height=out_height,
        size=len(data),
        faces_searched=made.faces_searched,
    )


_PLACE = re.compile(r"pixels x (\d+)-(\d+) y (\d+)-(\d+)")


def _unconfirmed(leaks: list[Leak]) -> set[Leak]:
    """Words Tesseract read on a scan that match nothing identifying, where the text
    detector sees no line: muscle beside bone reads as a word now and then. A finding
    that names a value, a pattern, a face or metadata always stands. Each image is
    decoded and searched once, however many such words it holds."""
    places: dict[str, list[tuple[Leak, Box]]] = {}
    for leak in leaks:
        place = _PLACE.fullmatch(leak.where)
        if leak.kind == OUTSIDE and place is not None:
            left, right, top, bottom = (int(v) for v in place.groups())
            places.setdefault(leak.file, []).append((leak, Box(left, top, right, bottom)))
    dismissed: set[Leak] = set()
    for path, found in places.items():
        with Image.open(path) as opened:
            lines = find_lines(np.asarray(opened.convert("L")))
        dismissed |= {leak for leak, box in found if not any(n.box.overlaps(box) for n in lines)}
    return dismissed


def _final_check(bundle: Bundle, originals: list[Path], settings: Settings) -> None:
    """`deid verify` on the bundle; a flagged image leaves it, and the note is rewritten."""
    report = verify.verify_outputs(
        [bundle.folder],
        originals or None,
        settings.text_policy,
        jobs=2,
        profile=settings.profile,
        faces={i.name for i in bundle.images if i.faces_searched},
    )
    scans = {i.name for i in bundle.images if i.source == "series"}
    on_scans = [leak for leak in report.leaks if Path(leak.file).name in scans]
    dismissed = _unconfirmed(on_scans)
    leaks = [leak for leak in report.leaks if leak not in dismissed]
    flagged = {Path(leak.file).name for leak in leaks}
    bundle.findings = [f"{Path(leak.file).name}: {leak.where}: {leak.kind}" for leak in leaks]
    kept = [i for i in bundle.images if i.name not in flagged]
    if len(kept) == len(bundle.images):
        return
    for image in bundle.images:
        if image.name in flagged:
            (bundle.folder / image.name).unlink(missing_ok=True)
    bundle.images = kept
    note.write(bundle.folder, bundle.images)
