"""Verification: an independent look at finished outputs for identifying values.

`verify_outputs` is the reviewer's check of outputs already on disk (`deid verify`,
`deid profiles test`): it reads DICOM, PNG, JPEG, WebP and note files back, walks every
element, chunk, segment and line, OCRs the pixels, reads the run's manifest and report
page (they are passed on with the outputs), and reports `Leak`s. It does not trust the
steps that wrote the outputs: it collects the original headers' identifying values
(`deid.originals`) and looks for them everywhere, along with the shapes of identifying
values (`deid.phitext`). Findings name the kind of value and where it was seen, never
the value itself. PNG, JPEG and WebP outputs are checked by `deid.imagecheck` (`check_png`
and `check_jpeg` are re-exported here), and `Leak` is `deid.leak`'s.

An original value is no finding in a DICOM value where `_` joins it to a longer token
(`TOSHIBA_MEC` is a vendor, not the institution `TOSHIBA`), nor as the whole value of an
attribute that some original held it in unchanged, where the profile the outputs were
made by keeps it (`deid.originals.may_keep_unchanged`): a patient named `KNEE` does not
leak through BodyPartExamined `KNEE`.

The pipeline's own check of each DICOM output before it is written is
`deid.originals.output_leaks`.
"""

from __future__ import annotations

import re
import sqlite3
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deid import jpegmeta, pixels
from deid.errors import DeidError
from deid.imagecheck import FORMATS, check_image, check_jpeg, check_png
from deid.inputs import discover
from deid.leak import Leak
from deid.manifest import MANIFEST_NAME
from deid.originals import (
    Finding,
    OriginalValues,
    attribute_name,
    collect_originals,
    kept_on_purpose,
    phi_values,
    scan_bytes,
)
from deid.phitext import Matcher, full_date, manifest_findings, over_90, page_findings, text_kinds
from deid.pixelcheck import pixel_findings, planes, stored_bit_findings
from deid.pngmeta import SIGNATURE
from deid.profiles import DEFAULT_PROFILE, Profile, dictionary_vr, load
from deid.reader import sniff
from deid.text import TextPolicy

__all__ = [
    "FileCheck",
    "Finding",
    "Leak",
    "VerifyReport",
    "check_dicom",
    "check_jpeg",
    "check_png",
    "check_text",
    "collect_originals",
    "kept_on_purpose",
    "phi_values",
    "scan_bytes",
    "verify_outputs",
]


# --- DICOM -----------------------------------------------------------------------------

_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_PSEUDONYM = re.compile(r"ANON[0-9A-Z]{8}")
_META_PRIVATE = (0x00020100, 0x00020102)  # PrivateInformationCreatorUID, PrivateInformation
_DEFER = 256 * 1024  # bytes; larger values (pixel data) are read only if looked at
Unchanged = frozenset[tuple[int, str]]


def _values(ds: Dataset, tag: int, vr: str) -> list[str]:
    """The text of each value of an element, decoded with the dataset's character set.

    A value pydicom cannot decode is read as Latin-1 bytes instead, so nothing is
    skipped for being malformed. UN values (private tags read without a dictionary)
    are read as Latin-1 text too: they are where vendors put names.
    """
    raw = ds.get_item(tag)
    value: object = None
    if vr in _TEXT_VRS:
        try:
            value = ds[tag].value
        except Exception:  # a malformed value must still be searched
            value = raw.value if raw is not None else None
    elif vr == "UN":
        value = raw.value if raw is not None else None
    if value is None:
        return []
    items = value if isinstance(value, list | tuple | MultiValue) else [value]
    texts: list[str] = []
    for item in items:
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        texts.extend(part.strip(" \0") for part in text.split("\\"))
    return [text for text in texts if text]


def _unchanged(originals: Mapping[str, str] | None) -> Unchanged:
    """(tag, value) pairs an output may hold: see `collect_originals` with a profile."""
    return originals.kept if isinstance(originals, OriginalValues) else frozenset()


def _element_kinds(
    tag: int, vr: str, texts: list[str], matcher: Matcher, unchanged: Unchanged
) -> list[str]:
    """What is identifying about one element, from its tag, VR and values."""
    kinds = []
    group = tag >> 16
    if group & 1 or tag in _META_PRIVATE:
        kinds.append("private element")
    elif group & 0xFF00 == 0x6000:
        kinds.append("overlay element")
    elif group & 0xFF00 == 0x5000:
        kinds.append("curve element")
    for text in texts:
        whole = (tag, text) in unchanged
        kinds += text_kinds(text, matcher, vr, joined=True, but_whole=whole)
        if vr in ("DA", "DT") and full_date(text):
            kinds.append("full date")
        if vr == "PN" and not _PSEUDONYM.fullmatch(text.rstrip("^=")):
            kinds.append("person name")
        if vr == "AS" and over_90(text):
            kinds.append("age over 89")
    return kinds


def _walk(
    ds: Dataset, prefix: str, matcher: Matcher, unchanged: Unchanged
) -> Iterator[tuple[str, str]]:
    """(where, kind) of everything identifying in `ds` and its sequence items."""
    for key in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every value)
        tag = int(key)
        raw = ds.get_item(tag, keep_deferred=True)
        private = " private" if tag >> 16 & 1 else ""
        vr = raw.VR if raw is not None else None
        vr = vr or (None if private else dictionary_vr(tag)) or "UN"
        where = prefix + attribute_name(tag)
        if vr == "SQ":
            for kind in _element_kinds(tag, vr, [], matcher, unchanged):
                yield where + private, kind
            for index, item in enumerate(ds[tag].value or []):
                yield from _walk(item, f"{where}[{index}] > ", matcher, unchanged)
            continue
        texts = _values(ds, tag, vr)
        for kind in _element_kinds(tag, vr, texts, matcher, unchanged):
            yield where + private, kind


def check_dicom(
    path: Path, originals: Mapping[str, str] | None, policy: TextPolicy | None = None
) -> list[Leak]:
    """Everything identifying in one DICOM output, at every depth, file meta included.

    Reports any original value (`originals`, from `collect_originals`) in any text
    value, but where `_` joins it to a longer token or it is a value the originals held
    unchanged in the same attribute (`collect_originals` with a profile), and
    regardless of originals: dates with a month or day, person names that
    are not `ANON` pseudonyms, private, overlay and curve elements, values shaped like
    phone numbers, e-mail addresses, SSNs, written dates or IDs (see
    `data/phi_patterns.toml`), bits set above BitsStored in the stored pixel data, a
    non-zero preamble and PatientIdentityRemoved not YES.
    A file that cannot be read is reported as such: what cannot be checked is not clean.
    With a `policy`, the pixels are read too, every distinct frame as displayed, as a
    PNG's are (`check_png`): burned-in text in a DICOM output is a finding.
    """
    return _check_dicom(path, Matcher(originals), _unchanged(originals), policy)


def _check_dicom(
    path: Path, matcher: Matcher, unchanged: Unchanged, policy: TextPolicy | None = None
) -> list[Leak]:
    name = str(path)
    try:
        with path.open("rb") as f:
            head = f.read(132)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True, defer_size=_DEFER)
            found = list(_walk(ds.file_meta, "file meta > ", matcher, unchanged))
            found += _walk(ds, "", matcher, unchanged)
    except Exception:  # pydicom raises many types on corrupt input; all mean "unreadable"
        return [Leak(name, "file", "unreadable DICOM")]
    leaks = [Leak(name, where, kind) for where, kind in found]
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        leaks.insert(0, Leak(name, "file", "unreadable DICOM"))  # truncated: read as empty
    if head[128:132] == b"DICM" and any(head[:128]):
        leaks.insert(0, Leak(name, "preamble", "non-zero preamble"))
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        leaks.append(Leak(name, "PatientIdentityRemoved", "PatientIdentityRemoved not YES"))
    if "PixelData" in ds:
        leaks += [Leak(name, where, kind) for where, kind in stored_bit_findings(ds, name)]
        if policy is not None:
            leaks += _dicom_pixel_leaks(name, ds, matcher, policy)
    return list(dict.fromkeys(leaks))


def _dicom_pixel_leaks(name: str, ds: Dataset, matcher: Matcher, policy: TextPolicy) -> list[Leak]:
    """Text in a DICOM output's pixels (`ds` as the header check read it, its pixel data
    deferred until now): each distinct frame decoded, rendered and read in turn."""
    leaks: list[Leak] = []
    seen: set[bytes] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = pixels.Frames(ds, name)
            for index, frame in enumerate(frames):
                digest = pixels.frame_digest(frame)
                if digest in seen:
                    continue
                seen.add(digest)
                where = f"{name} frame {index + 1}" if len(frames) > 1 else name
                found = pixel_findings(planes(pixels.render(ds, frame)), matcher, policy)
                leaks += [Leak(where, place, kind) for place, kind in found]
    except DeidError:
        return [*leaks, Leak(name, "pixels", "undecodable pixel data")]
    return leaks


# --- Context notes and file names ------------------------------------------------------


def check_text(path: Path, originals: Mapping[str, str] | None) -> list[Leak]:
    """Original values and identifying patterns in a plain-text output (a context note)."""
    return _check_text(path, Matcher(originals))


def _check_text(path: Path, matcher: Matcher) -> list[Leak]:
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return [Leak(name, "file", "unreadable file")]
    leaks = [
        Leak(name, f"line {number}", kind)
        for number, line in enumerate(text.splitlines(), start=1)
        for kind in text_kinds(line, matcher)
    ]
    return list(dict.fromkeys(leaks))


def _check_manifest(path: Path, matcher: Matcher) -> list[Leak]:
    """Original values in a run's manifest, passed on with the outputs."""
    try:
        found = manifest_findings(path, matcher)
    except (OSError, sqlite3.Error, ValueError, TypeError):
        return [Leak(str(path), "file", "unreadable manifest")]
    return [Leak(str(path), where, kind) for where, kind in found]


def _check_page(path: Path, matcher: Matcher) -> list[Leak]:
    """Original values in the text of an HTML page (`deid report`'s `report.html`)."""
    try:
        found = page_findings(path.read_bytes(), matcher)
    except OSError:
        return [Leak(str(path), "file", "unreadable file")]
    return [Leak(str(path), where, kind) for where, kind in found]


def _name_leaks(path: Path, root: Path | None, matcher: Matcher) -> list[Leak]:
    """Original values in an output's file name or the folders below the output root."""
    try:
        parts = path.relative_to(root).parts if root is not None else (path.name,)
    except ValueError:
        parts = (path.name,)
    kinds = matcher.kinds(" / ".join(parts))
    return [Leak(str(path), "file name", kind) for kind in kinds]


# --- A set of outputs ------------------------------------------------------------------

FileType = Literal["dicom", "png", "jpeg", "webp", "text", "manifest", "page", "other"]


@dataclass(frozen=True)
class FileCheck:
    """One output file: what it was checked as, and what was found in it."""

    path: str
    type: FileType
    leaks: tuple[Leak, ...] = ()


@dataclass
class VerifyReport:
    """The outcome of checking a set of outputs: per-file leaks and counts."""

    files: list[FileCheck] = field(default_factory=list)

    def _count(self, *types: FileType) -> int:
        return sum(1 for f in self.files if f.type in types)

    @property
    def checked(self) -> int:
        return self._count("dicom", "png", "jpeg", "webp", "text", "manifest", "page")

    @property
    def dicom(self) -> int:
        return self._count("dicom")

    @property
    def png(self) -> int:
        return self._count("png")

    @property
    def jpeg(self) -> int:
        return self._count("jpeg")

    @property
    def webp(self) -> int:
        return self._count("webp")

    @property
    def notes(self) -> int:
        return self._count("text")

    @property
    def manifests(self) -> int:
        return self._count("manifest")

    @property
    def pages(self) -> int:
        return self._count("page")

    @property
    def skipped(self) -> int:
        """Files of no type this check knows (see `_file_type`): not looked at."""
        return self._count("other")

    @property
    def leaks(self) -> list[Leak]:
        return [leak for f in self.files for leak in f.leaks]

    @property
    def clean(self) -> bool:
        return not self.leaks

    def by_file(self) -> dict[str, list[Leak]]:
        """Leaks grouped by file, for files with any."""
        return {f.path: list(f.leaks) for f in self.files if f.leaks}

    def lines(self) -> list[str]:
        """One `file: where: kind` line per leak."""
        return [leak.line() for leak in self.leaks]

    def summary(self) -> str:
        leaky = sum(1 for f in self.files if f.leaks)
        found = f"{len(self.leaks)} leaks in {leaky} files" if self.leaks else "no leaks found"
        kinds = f"{self.dicom} DICOM, {self.png} PNG"
        kinds += f", {self.jpeg} JPEG" if self.jpeg else ""
        kinds += f", {self.webp} WebP" if self.webp else ""
        kinds += f", {self.notes} notes"
        kinds += f", {self.manifests} manifest" if self.manifests else ""
        kinds += f", {self.pages} HTML page" if self.pages else ""
        return f"{self.checked} files checked ({kinds}), {self.skipped} skipped: {found}"


def _file_type(path: Path) -> FileType:
    """What to check a file as: images by their content, the rest by name or ending."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        head = b""
    suffix = path.suffix.lower()
    if head.startswith(SIGNATURE) or suffix == ".png":
        return "png"
    if head.startswith(jpegmeta.SOI + b"\xff"):
        return "jpeg"
    if head.startswith(jpegmeta.WEBP_RIFF) and head[8:12] == b"WEBP":
        return "webp"
    if suffix == ".dcm" or sniff(path):
        return "dicom"
    if suffix in (".jpg", ".jpeg", ".webp"):  # by name only: unreadable, so a finding
        return "webp" if suffix == ".webp" else "jpeg"
    if suffix == ".txt":
        return "text"
    if path.name == MANIFEST_NAME:
        return "manifest"
    if path.suffix.lower() in (".html", ".htm"):
        return "page"
    return "other"


def _check_file(
    path: Path,
    root: Path | None,
    kind: FileType,
    matcher: Matcher,
    unchanged: Unchanged,
    policy: TextPolicy,
    faces: bool = False,
) -> FileCheck:
    leaks = _name_leaks(path, root, matcher)
    if kind == "dicom":
        leaks += _check_dicom(path, matcher, unchanged, policy)
    elif kind in FORMATS:
        leaks += check_image(path, matcher, policy, kind, faces)
    elif kind == "text":
        leaks += _check_text(path, matcher)
    elif kind == "manifest":
        leaks += _check_manifest(path, matcher)
    elif kind == "page":
        leaks += _check_page(path, matcher)
    return FileCheck(str(path), kind, tuple(dict.fromkeys(leaks)))


def verify_outputs(
    outputs: Sequence[Path],
    originals: Sequence[Path] | None,
    policy: TextPolicy,
    *,
    jobs: int = 1,
    kept: Callable[[int, str], bool] | None = None,
    values: Mapping[str, str] | None = None,
    profile: Profile | None = None,
    faces: bool | Collection[str] = False,
) -> VerifyReport:
    """Check every file under `outputs`, against the values of the `originals` if given.

    Without originals only the patterns apply (dates, names that are not pseudonyms,
    private elements, phone numbers ...); with them, any value of an original header
    found anywhere in an output, its file name included, is a leak, but a value an
    original held unchanged where `profile` (by default the default profile) lets it
    stay; and what `profile` keeps on purpose when it does not claim Safe Harbor, or
    what `kept` names if given (`kept_on_purpose`), is not looked for. `jobs` files are
    checked at a time (OCR runs in Tesseract processes). Raises `UsageError` for a path
    that does not exist and `OcrUnavailableError` when PNGs cannot be read. `values`,
    if given, are the originals' values already collected (`collect_originals`), used
    instead of reading `originals` again. With `faces`, a face found in an image is a
    leak too: in every image if True, else in the images of those file names (`deid
    share` looks for faces in photos only: the detector mistakes some scans for faces).
    """
    if values is None and originals is not None:
        profile = profile if profile is not None else load(DEFAULT_PROFILE)
        kept = kept if kept is not None else kept_on_purpose(profile)
        values = collect_originals(originals, kept, profile=profile)
    matcher, unchanged = Matcher(values), _unchanged(values)
    work: list[tuple[Path, Path | None]] = []
    for output in outputs:
        root = output if output.is_dir() else None
        work += [(path, root) for path in discover([output])]

    def check(item: tuple[Path, Path | None, FileType]) -> FileCheck:
        look = faces if isinstance(faces, bool) else item[0].name in faces
        return _check_file(*item, matcher, unchanged, policy, look)

    typed = [(path, root, _file_type(path)) for path, root in work]
    if jobs <= 1:
        return VerifyReport([check(item) for item in typed])
    # Only OCR runs in threads: it waits on Tesseract processes, and the header checks
    # silence pydicom's warnings, which cannot be done safely from several threads.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {
            i: pool.submit(check, item) for i, item in enumerate(typed) if item[2] in FORMATS
        }
        checked = [None if i in pending else check(item) for i, item in enumerate(typed)]
        return VerifyReport(
            [done if done is not None else pending[i].result() for i, done in enumerate(checked)]
        )
