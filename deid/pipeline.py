"""One file's way through the program.

read -> classify -> pixels (render, find text, redact) -> tags -> write -> verify

`process` never raises: every outcome, good or bad, is a `FileResult`, so a batch goes
on past a bad file. It fails closed: if any step fails the file gets no output at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from deid import classify, context, output, pixels, reader, tags, text, verify
from deid.boxes import Box
from deid.errors import DeidError, ExitCode, LeakError, NotDicomError
from deid.profiles import Profile
from deid.pseudonym import Pseudonymizer

Status = Literal["written", "skipped", "failed"]


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to process a file; plain data, so it pickles."""

    profile: Profile
    key: bytes
    out_dir: Path
    formats: frozenset[str] = frozenset({"png"})
    tree: bool = False
    frames: str = "middle"
    context: bool = False
    overwrite: bool = False
    detect_text: bool = True
    render: pixels.RenderOptions = field(default_factory=pixels.RenderOptions)
    compress_level: int = 1
    max_size: int = 0

    @classmethod
    def for_profile(
        cls, profile: Profile, key: bytes, out_dir: Path, **overrides: object
    ) -> Settings:
        """Settings from a profile's `[render]`, `[text]` and `[png]` tables, then overrides.

        Overrides that are None keep the profile's value, so a CLI passes its options as
        they come.
        """
        render = profile.section("render")
        png = profile.section("png")
        switches = {k: render[k] for k in ("modality_lut", "voi", "palette") if k in render}
        values: dict[str, Any] = {
            "frames": str(render.get("frames", "middle")),
            "detect_text": profile.section("text").get("detect", "always") != "never",
            "compress_level": int(png.get("compress_level", 1)),
            "max_size": int(png.get("max_size", 0)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            profile=profile,
            key=key,
            out_dir=out_dir,
            render=pixels.RenderOptions(**switches),
            **values,
        )

    @property
    def pseudonymizer(self) -> Pseudonymizer:
        return Pseudonymizer(self.key)

    @property
    def text_policy(self) -> text.TextPolicy:
        return text.TextPolicy.from_profile(self.profile.section("text"))


@dataclass(frozen=True)
class FileResult:
    """The outcome for one input: what was written, or why nothing was."""

    path: str
    status: Status
    kind: str = ""
    reason: str = ""
    exit_code: int = ExitCode.OK
    outputs: tuple[str, ...] = ()
    regions: int = 0
    changes: int = 0


@dataclass
class PixelWork:
    """The decoded frames of one image, the regions found on each, and kept renders.

    `fixed` regions apply to every frame; `found[i]` holds the text regions of frame i
    only, so text found on one frame is never stamped onto another.
    """

    frames: np.ndarray
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

    @property
    def covers(self) -> int:
        """Boxes covered over all frames (fixed ones once)."""
        found = sum(len(text.redaction_boxes(r)) for r in self.found.values())
        return len(text.redaction_boxes(self.fixed)) + found


def find_text(
    ds: Dataset,
    frames: np.ndarray,
    settings: Settings,
    phi: Mapping[str, str],
    where: str,
    search: Collection[int],
    rendered: dict[int, np.ndarray],
    fixed: Sequence[text.Region] = (),
    keep: Collection[int] = (),
) -> dict[int, list[text.Region]]:
    """Text regions of each frame in `search` (the `fixed` ones not included).

    Identical frames are read once. Renders of the frames in `keep` are stored in
    `rendered`. Raises `LeakError` when text stays readable after redaction.
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
    """Decode the frames; find text, if asked, on the frames in `search` (default all)."""
    frames = pixels.decode(ds, path)
    work = PixelWork(frames, list(fixed))
    if settings.detect_text:
        wanted = range(len(frames)) if search is None else search
        work.found = find_text(ds, frames, settings, phi, path, wanted, work.rendered, fixed, keep)
    return work


def _originals(ds: Dataset, settings: Settings) -> dict[str, str]:
    """The original identifying values the text search and the leak check look for."""
    return verify.phi_values(ds, verify.kept_on_purpose(settings.profile))


def _fixed(ds: Dataset, settings: Settings) -> list[text.Region]:
    """The profile's fixed regions: covered whether or not text is searched for, since
    they are where a device is known to print identifying text."""
    return text.fixed_regions(ds, settings.profile.section("regions"))


def process(path: Path, settings: Settings) -> FileResult:
    """De-identify one file into `settings.out_dir`; never raises."""
    try:
        return _process(path, settings)
    except NotDicomError as exc:
        return FileResult(str(path), "skipped", exc.kind, exc.message, exc.exit_code)
    except DeidError as exc:
        return FileResult(str(path), "failed", exc.kind, exc.message, exc.exit_code)
    except Exception as exc:  # fail closed on anything unforeseen, without its text
        reason = f"unexpected {type(exc).__name__}; no output written"
        return FileResult(str(path), "failed", "internal", reason, ExitCode.INTERNAL)


def _process(path: Path, settings: Settings) -> FileResult:
    ds = reader.read(path)
    where = str(path)
    classify.classify(ds, where, settings.profile)
    originals = _originals(ds, settings)
    note = context.build(ds).text() if settings.context else None
    want_png = "png" in settings.formats
    want_dicom = "dicom" in settings.formats

    count = pixels.frame_count(ds)
    selected = pixels.select_frames(count, settings.frames) if want_png else []
    work: PixelWork | None = None
    fixed = _fixed(ds, settings)
    if want_png or settings.detect_text or fixed:
        search = None if want_dicom else selected
        work = prepare_pixels(ds, where, settings, originals, fixed, selected, search)
    elif want_dicom:
        pixels.check_pixel_data(ds, where)

    images: list[bytes] = []
    if work is not None:
        images = [
            output.png_bytes(
                pixels.black_out(work.shown(ds, index, settings.render), work.boxes(index)),
                compress_level=settings.compress_level,
                max_size=settings.max_size,
            )
            for index in selected
        ]

    redacted = None
    if want_dicom and work is not None and work.covers:
        fixed_boxes = text.redaction_boxes(work.fixed)
        per_frame = [text.redaction_boxes(work.found.get(i, [])) for i in range(len(work.frames))]
        redacted = pixels.redact(ds, work.frames, fixed_boxes, settings.render, per_frame=per_frame)
    report = tags.deidentify(
        ds,
        settings.profile,
        settings.pseudonymizer,
        pixels_cleaned=settings.detect_text,
        pixels_changed=redacted is not None,
    )
    transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    if redacted is not None:
        pixels.store(ds, redacted)
        transfer_syntax = ExplicitVRLittleEndian
    tags.rebuild_file_meta(ds, transfer_syntax)

    names = output.output_names(
        settings.out_dir,
        tree=settings.tree,
        patient=report.patient,
        study=report.study,
        series=report.series,
        instance=report.instance,
        frames=selected,
        frame_count=count,
    )
    txn = output.Transaction(overwrite=settings.overwrite)
    if want_dicom:
        serialized = output.serialize(ds)
        findings = verify.scan_bytes(serialized.header(), originals, names.dicom.name)
        if findings:
            kinds = ", ".join(sorted({f.kind for f in findings}))
            raise LeakError(f"leak check found {kinds} in the output; nothing written", where)
        txn.add(names.dicom, serialized.chunks)
    for data, png_path in zip(images, names.png, strict=True):
        txn.add(png_path, data)
    if note is not None:
        txn.add(names.context, note.encode("utf-8"))
    written = txn.commit()
    return FileResult(
        str(path),
        "written",
        outputs=tuple(str(p) for p in written),
        regions=work.covers if work else 0,
        changes=len(report.changes),
    )


@dataclass
class Inspection:
    """What `anonymize` would do to one file, computed without writing anything."""

    path: str
    kind: str
    burned_in_annotation: str
    changes: list[tags.Change]
    regions: list[text.Region]
    preview: np.ndarray | None


def inspect(path: Path, settings: Settings, *, preview: bool = False) -> Inspection:
    """Plan the de-identification of one file; raises DeidError for a bad file."""
    ds = reader.read(path)
    where = str(path)
    found = classify.classify(ds, where, settings.profile)
    regions_found: list[text.Region] = []
    image = None
    fixed = _fixed(ds, settings)
    if preview or settings.detect_text or fixed:
        index = pixels.select_frames(pixels.frame_count(ds), settings.frames)[0]
        work = prepare_pixels(
            ds, where, settings, _originals(ds, settings), fixed, [index], [index]
        )
        regions_found = work.regions(index)
        if preview:
            image = work.shown(ds, index, settings.render)
    report = tags.deidentify(ds, settings.profile, settings.pseudonymizer)
    return Inspection(
        where, found.kind, found.burned_in_annotation, report.changes, regions_found, image
    )
