"""The stages of one file's way through the program, listed once.

read -> classify -> pixels -> render -> redact -> tags -> check -> write

Each stage is a function of the file's `FileWork` that adds to its record. `anonymize`
runs them all; `inspect` runs those that write nothing (`Stage.writes` is False), on
the one frame it previews; `profiles test` runs `anonymize`'s list through the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from deid import classify, context, originals, output, pixels, reader, tags, text
from deid.boxes import Box
from deid.chunks import Spill, Spilled
from deid.errors import InputChangedError, LeakError, UnreadableError
from deid.pixels import Rewritten
from deid.pixelwork import PixelWork, prepare_pixels
from deid.record import ActionRecord, BoxRecord, FileRecord, Seen, file_digest
from deid.settings import Settings

# Renders and PNGs of up to this many shown frames are held in memory; past it, each is
# made in turn and its PNG kept in a temporary file until written (`--frames all`).
HELD_FRAMES = 8


@dataclass
class FileWork:
    """One input on its way: what each stage made, for the stages after it.

    `writing` is False when only planning (`inspect`, `share`): frames are searched only
    where they are shown, and nothing is redacted, checked or written; `first_only` then
    keeps the first shown frame alone (`inspect` previews one).
    """

    path: Path
    settings: Settings
    record: FileRecord
    writing: bool = True
    first_only: bool = False
    ds: Dataset = field(default_factory=Dataset)
    classification: classify.Classification | None = None
    originals: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None
    selected: list[int] = field(default_factory=list)
    pixels: PixelWork | None = None
    images: list[bytes | Spilled] = field(default_factory=list)
    rewrite: Rewritten | None = None
    report: tags.TagReport | None = None
    serialized: output.Serialized | None = None
    seen: Seen | None = None

    @property
    def where(self) -> str:
        return self.record.path

    @property
    def want_png(self) -> bool:
        return "png" in self.settings.formats or not self.writing

    @property
    def want_dicom(self) -> bool:
        return "dicom" in self.settings.formats and self.writing


def read(work: FileWork) -> None:
    """Parse the file (pixel data left for later); remember its content digest."""
    if work.writing and not work.path.exists():
        raise InputChangedError("the input is gone (deleted or moved during the run)", work.where)
    work.ds = reader.read(work.path, limits=work.settings.limits)
    if work.seen is not None and work.seen.changed(work.path):
        raise InputChangedError("the input changed during the run", work.where)
    if work.writing and not work.record.digest:
        try:
            work.record.digest = file_digest(work.path)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UnreadableError(f"cannot read the file: {reason}", work.where) from None


def classify_object(work: FileWork) -> None:
    """Decide what the object is; collect the original values the checks look for."""
    settings = work.settings
    work.classification = classify.classify(work.ds, work.where, settings.profile)
    work.record.object = work.classification.kind
    work.originals = originals.original_values(work.ds, settings.profile)
    if settings.context:
        work.note = context.build(work.ds).text()


def find_pixels(work: FileWork) -> None:
    """Decode the frames and find the text to cover: fixed regions and found lines."""
    settings, ds = work.settings, work.ds
    count = pixels.frame_count(ds)
    work.record.frames = count
    work.selected = pixels.select_frames(count, settings.frames) if work.want_png else []
    if work.first_only:
        work.selected = work.selected[:1]
    fixed = text.fixed_regions(ds, settings.profile.section("regions"))
    if work.want_png or settings.detect_text or fixed:
        search = None if work.want_dicom else work.selected
        keep = work.selected if len(work.selected) <= HELD_FRAMES else []
        work.pixels = prepare_pixels(ds, work.where, settings, work.originals, fixed, keep, search)
        work.record.boxes = _box_records(work.pixels)
    elif work.want_dicom:
        pixels.check_pixel_data(ds, work.where)


def _box_records(found: PixelWork) -> list[BoxRecord]:
    boxes: list[tuple[int | None, text.Region]] = [
        (None, r) for r in found.fixed if r.decision == "redact"
    ]
    for frame, regions in sorted(found.found.items()):
        boxes += [(frame, r) for r in regions if r.decision == "redact"]
    return [
        BoxRecord(frame, r.box.left, r.box.top, r.box.right, r.box.bottom, r.reason)
        for frame, r in boxes
    ]


def render(work: FileWork) -> None:
    """The PNG of each shown frame, its boxes blacked out."""
    found, settings = work.pixels, work.settings
    if found is None or not work.writing or "png" not in settings.formats:
        return
    spill = None if len(work.selected) <= HELD_FRAMES else Spill()
    for index in work.selected:
        png = output.png_bytes(
            pixels.black_out(found.shown(work.ds, index, settings.render), found.boxes(index)),
            compress_level=settings.compress_level,
            max_size=settings.max_size,
        )
        work.images.append(png if spill is None else spill.keep(png))


def redact(work: FileWork) -> None:
    """Plan the DICOM output's new pixel data: every frame with its boxes blacked out,
    and the bits above Bits Stored cleared, where legacy overlays hide. Nothing is
    decoded whole: the frames are rewritten one at a time as the output is written.

    Native data is cleared in place. A codestream cannot be cleared without re-encoding
    it, and every codec here would keep the bits (RLE all of them, JPEG lossless, JPEG-LS
    and JPEG 2000 as many as their precision): compressed data that holds one goes out
    decoded, values masked, as native data; compressed data that holds none keeps its
    codestream as it is."""
    if not work.want_dicom:
        return
    ds, found = work.ds, work.pixels
    fixed_boxes: list[Box] = []
    per_frame: list[list[Box]] = []
    if found is not None:
        fixed_boxes = text.redaction_boxes(found.fixed)
        per_frame = [text.redaction_boxes(found.found.get(i, [])) for i in range(len(found.frames))]
    if fixed_boxes or any(per_frame):
        assert found is not None
        if pixels.unused_bits_set(ds, work.where):
            work.record.actions.append(ActionRecord("PixelData", "clear-unused-bits"))
        work.rewrite = pixels.plan(ds, found.frames, fixed_boxes, per_frame, work.settings.render)
    elif pixels.clear_unused_bits(ds, work.where):
        work.record.actions.append(ActionRecord("PixelData", "clear-unused-bits"))
    elif pixels.encoded_bits_set(ds, work.where):
        work.record.actions.append(ActionRecord("PixelData", "clear-unused-bits"))
        frames = found.frames if found is not None else pixels.Frames(ds, work.where)
        work.rewrite = pixels.plan(ds, frames, [], [])


def deidentify_tags(work: FileWork) -> None:
    """Apply the profile to every attribute; a DICOM output gets its new file meta."""
    settings, ds = work.settings, work.ds
    work.report = tags.deidentify(
        ds,
        settings.profile,
        settings.pseudonymizer,
        pixels_cleaned=settings.detect_text and work.writing,
        pixels_changed=work.rewrite is not None,
    )
    changed = [ActionRecord(c.path, c.rule.action.value) for c in work.report.changes]
    work.record.actions = changed + work.record.actions  # and what `redact` did
    if not work.writing:
        return
    transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    if work.rewrite is not None:
        pixels.store_streamed(ds, work.rewrite)
        transfer_syntax = ExplicitVRLittleEndian
    tags.rebuild_file_meta(ds, transfer_syntax)


def check(work: FileWork) -> None:
    """Search the DICOM output's header for every original value before it is written."""
    if not work.want_dicom:
        return
    work.serialized = output.serialize(work.ds)
    findings = originals.output_leaks(work.ds, work.serialized.header(), work.originals)
    if findings:
        found = ", ".join(f.line() for f in findings)
        raise LeakError(f"leak check found {found}; nothing written", work.where)


def write(work: FileWork) -> None:
    """Write every output of the file, all or none."""
    settings, report = work.settings, work.report
    assert report is not None
    names = output.output_names(
        settings.out_dir,
        tree=settings.tree,
        patient=report.patient,
        study=report.study,
        series=report.series,
        instance=report.instance,
        frames=work.selected,
        frame_count=work.record.frames,
    )
    txn = output.Transaction(overwrite=settings.overwrite)
    try:
        if work.serialized is not None:
            txn.add(names.dicom, work.serialized.chunks)
        for data, png_path in zip(work.images, names.png, strict=True):
            txn.add(png_path, data if isinstance(data, bytes) else [data])
        if work.note is not None:
            txn.add(names.context, work.note.encode("utf-8"))
        work.record.outputs = tuple(str(p) for p in txn.commit())
    except BaseException:
        txn.abort()  # a stop between two files of the set leaves neither
        raise
    work.record.status = "written"


@dataclass(frozen=True)
class Stage:
    """One step, named in the record's timings; `writes` steps are skipped by inspect."""

    name: str
    run: Callable[[FileWork], None]
    writes: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("read", read),
    Stage("classify", classify_object),
    Stage("pixels", find_pixels),
    Stage("render", render, writes=True),
    Stage("redact", redact, writes=True),
    Stage("tags", deidentify_tags),
    Stage("check", check, writes=True),
    Stage("write", write, writes=True),
)
