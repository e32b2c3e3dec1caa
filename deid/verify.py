"""Verification: an independent look at finished outputs for identifying values.

It does not trust the tag step: it collects the original header's identifying values
and searches the serialized output bytes for them. Findings name the kind of value and
where it was seen, never the value itself.

`scan_bytes` is the pipeline's check of each DICOM output before it is written.
`verify_outputs` is the reviewer's check of outputs already on disk (`deid verify`,
`deid profiles test`): it reads DICOM, PNG and note files back, walks every element,
chunk and line, OCRs the pixels, and reports `Leak`s.
"""

from __future__ import annotations

import functools
import io
import re
import string
import tomllib
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, cast

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deid import pixels
from deid.boxes import Box, bounding
from deid.errors import DeidError
from deid.inputs import discover
from deid.ocr import Word, read_words
from deid.profiles import Action, AgeMode, DateMode, Profile, dictionary_vr
from deid.reader import read, sniff
from deid.text import TextPolicy
from deid.text.decide import kept_token

_IDENTIFYING_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "AE", "UC")
_IDENTIFYING_KEYWORDS = {
    "PatientName": "patient name",
    "PatientID": "patient ID",
    "OtherPatientIDs": "patient ID",
    "AccessionNumber": "accession number",
    "PatientBirthDate": "birth date",
    "StudyDate": "study date",
    "InstitutionName": "institution",
    "InstitutionAddress": "address",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "telephone number",
    "StudyID": "study ID",
}
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_KIND_BY_TAG = {cast(int, tag_for_keyword(k)): kind for k, kind in _IDENTIFYING_KEYWORDS.items()}
_UID_TAGS = frozenset(cast(int, tag_for_keyword(k)) for k in _UID_KEYWORDS)


@dataclass(frozen=True)
class Finding:
    """One identifying value seen in an output: its kind and where, never the value."""

    kind: str
    where: str


_STRING_VRS = frozenset({*_IDENTIFYING_VRS, "DA", "DT", "UI", "CS"})


def _raw_strings(
    ds: Dataset, wanted: Callable[[int, str], bool] | None = None
) -> Iterator[tuple[int, str, str]]:
    """(tag, VR, text) of every string value at any depth, without converting values.

    Raw bytes are decoded as Latin-1, which maps each byte to one character, so the text
    encodes back to exactly the bytes that a copy of the value would leave in an output.
    """
    for tag, elem in ds._dict.items():  # pydicom's map: no conversion, no deferred read
        vr = elem.VR or dictionary_vr(tag)
        if not vr:
            continue
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _raw_strings(item, wanted)
            continue
        if vr not in _STRING_VRS or (wanted is not None and not wanted(tag, vr)):
            continue
        value = elem.value
        if value is None:
            continue
        if isinstance(value, bytes):
            text = value.decode("latin-1")
        elif isinstance(value, list | tuple | MultiValue):
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)  # str, PersonName, UID ...
        for part in text.split("\\"):
            yield int(tag), vr, part


def phi_values(ds: Dataset, kept: Callable[[int, str], bool] | None = None) -> dict[str, str]:
    """Identifying values of an original dataset, mapped to the kind of each.

    `kept(tag, vr)` names attributes a profile keeps on purpose (see `kept_on_purpose`):
    their values are left out, so keeping them is not reported as a leak.
    """
    found: dict[str, str] = {}

    def add(value: str, kind: str) -> None:
        value = value.strip(" \0")
        if len(value) >= 3:
            found.setdefault(value, kind)

    def wanted(tag: int, vr: str) -> bool:
        """Could this element give a value below? Others are not even decoded."""
        identifying = (
            vr == "PN"
            or tag in _KIND_BY_TAG
            or tag in _UID_TAGS
            or bool(tag >> 16 & 1 and tag & 0xFF00 and vr in _IDENTIFYING_VRS)
        )
        return identifying and not (kept is not None and kept(tag, vr))

    for tag, vr, text in _raw_strings(ds, wanted):
        kind = _KIND_BY_TAG.get(tag)
        if vr == "PN":
            kind_pn = kind or "person name"
            add(text, kind_pn)
            for part in re.split(r"[\^=, ]+", text):
                add(part, kind_pn)
        elif kind in ("birth date", "study date"):
            if text.strip()[4:8] != "0101":
                add(text, kind)
        elif kind:
            add(text, kind)
        elif tag in _UID_TAGS and text.strip(" \0") not in UID_dictionary:
            add(text, "original UID")
        elif tag >> 16 & 1 and tag & 0xFF00 and vr in _IDENTIFYING_VRS and len(text) >= 6:
            add(text, "private value")  # private creators (gggg,00xx) name vendors: skipped
    return found


def kept_on_purpose(profile: Profile) -> Callable[[int, str], bool] | None:
    """What a profile keeps by its own rules, unless it claims Safe Harbor.

    A Safe Harbor profile (or one extending it) may keep nothing identifying, so every
    value is checked; a profile that does not claim it (the Basic Profile with Retain
    Full Dates, say) keeps some values by design, and those are not leaks.
    """
    if profile.claims_safe_harbor:
        return None

    def kept(tag: int, vr: str) -> bool:
        rule = profile.rule_for(tag, vr)
        if rule.action is Action.KEEP:
            return not rule.allowed
        if rule.action is Action.DATE:
            return profile.date_mode is DateMode.KEEP
        return rule.action is Action.AGE and profile.age_mode is AgeMode.KEEP

    return kept


def scan_bytes(header: bytes, values: dict[str, str], where: str) -> list[Finding]:
    """Search a serialized DICOM file, pixel data value left out, for identifying values.

    Pixel bytes are left out by the caller (`output.Serialized.header`) because random
    image data holds any short string by chance. A leak copies a value verbatim, so
    values match case-sensitively and as whole words: a name part such as "PATIENT"
    must not match inside "Retain Patient Characteristics".
    """
    findings = []
    for value, kind in values.items():
        needle = value.encode("latin-1", "replace")
        if needle in header and re.search(
            rb"(?<![A-Za-z0-9])" + re.escape(needle) + rb"(?![A-Za-z0-9])", header
        ):
            findings.append(Finding(kind, where))
    return _unique(findings)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


# --- Checking finished outputs -------------------------------------------------------
#
# Everything below looks at outputs only, the way a reviewer would: it reads each file
# back, walks every element or chunk, and OCRs the pixels. It shares no code with the
# steps that wrote the outputs except file discovery, the DICOM reader and Tesseract.


@dataclass(frozen=True)
class Leak:
    """Something identifying in an output: which file, where in it, and what kind.

    `where` is an attribute path (`ReferencedStudySequence[0] > PatientName`,
    `(0029,1001) private`, `file meta > SourceApplicationEntityTitle`), a PNG chunk
    (`PNG tEXt chunk`), a pixel box (`pixels x 10-120 y 5-30`), a line of a note
    (`line 3`) or `file name`. A leak never carries the value it found, so reports can
    be printed, logged and kept.
    """

    file: str
    where: str
    kind: str

    def line(self) -> str:
        """`file: where: kind`, the line `deid verify` prints."""
        return f"{self.file}: {self.where}: {self.kind}"


@dataclass(frozen=True)
class _Pattern:
    name: str
    kind: str
    regex: re.Pattern[str]
    vrs: frozenset[str]


@functools.cache
def _patterns() -> tuple[_Pattern, ...]:
    """The shapes of identifying values, from `data/phi_patterns.toml`."""
    text = (resources.files("deid") / "data" / "phi_patterns.toml").read_text("utf-8")
    return tuple(
        _Pattern(
            name, str(table["kind"]), re.compile(table["regex"], re.I), frozenset(table["vrs"])
        )
        for name, table in tomllib.loads(text).items()
    )


def _pattern_kinds(text: str, vr: str | None = None) -> list[str]:
    """Kinds of the patterns found in `text`; with a VR, only the patterns for that VR."""
    return [p.kind for p in _patterns() if (vr is None or vr in p.vrs) and p.regex.search(text)]


def _tokens(text: str) -> list[re.Match[str]]:
    return list(re.finditer(r"[^\W_]+", text.casefold()))


class _Matcher:
    """Finds original values in text as whole runs of words, ignoring case and punctuation.

    `DOE^JANE` is found in `Doe, Jane` but `ANN` is not found in `ANNA`, and the same
    UID is found whatever separates its parts. Values are looked up by word runs, so the
    cost does not grow with the number of originals (a study can have thousands of UIDs).
    """

    def __init__(self, originals: Mapping[str, str] | None) -> None:
        self._kinds: dict[tuple[str, ...], str] = {}
        for value, kind in (originals or {}).items():
            words = tuple(m.group() for m in _tokens(value))
            if words:
                self._kinds.setdefault(words, kind)
        self._lengths = sorted({len(words) for words in self._kinds})

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """(kind, start, end) of every original value in `text`, as character spans."""
        if not self._kinds:
            return []
        found = []
        tokens = _tokens(text)
        words = [m.group() for m in tokens]
        for i in range(len(words)):
            for length in self._lengths:
                if i + length > len(words):
                    break
                kind = self._kinds.get(tuple(words[i : i + length]))
                if kind is not None:
                    found.append((kind, tokens[i].start(), tokens[i + length - 1].end()))
        return found

    def kinds(self, text: str) -> list[str]:
        return list(dict.fromkeys(kind for kind, _, _ in self.spans(text)))


def _text_kinds(text: str, matcher: _Matcher, vr: str | None = None) -> list[str]:
    return list(dict.fromkeys([*matcher.kinds(text), *_pattern_kinds(text, vr)]))


def collect_originals(
    paths: Iterable[Path], kept: Callable[[int, str], bool] | None = None
) -> dict[str, str]:
    """Identifying values of every DICOM original under `paths`, mapped to their kind.

    The union of `phi_values` over the originals, plus every UID they hold at any depth
    that is not a well-known standard UID (frame of reference, referenced instances):
    an output carrying one can be linked back to the original. Files that are not
    DICOM, or cannot be read, are skipped silently: they hold no header values an
    output could have copied.
    """
    found: dict[str, str] = {}
    for path in discover(list(paths)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read(path, stop_before_pixels=True)
                values = phi_values(ds, kept)
                uids = [
                    text
                    for _, _, text in _raw_strings(
                        ds, lambda tag, vr: vr == "UI" and not (kept is not None and kept(tag, vr))
                    )
                ]
        except DeidError:
            continue
        for text in uids:
            uid = text.strip(" \0")
            if len(uid) >= 3 and uid not in UID_dictionary:
                values.setdefault(uid, "original UID")
        for value, kind in values.items():
            found.setdefault(value, kind)
    return found


# --- DICOM -----------------------------------------------------------------------------

_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_PSEUDONYM = re.compile(r"ANON[0-9A-Z]{8}")
_META_PRIVATE = (0x00020100, 0x00020102)  # PrivateInformationCreatorUID, PrivateInformation
_DEFER = 256 * 1024  # bytes; larger values (pixel data) are read only if looked at


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _segment(tag: int) -> str:
    if tag >> 16 & 1:
        return _tag_text(tag)
    return keyword_for_tag(tag) or _tag_text(tag)


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


def _element_kinds(tag: int, vr: str, texts: list[str], matcher: _Matcher) -> list[str]:
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
        kinds += _text_kinds(text, matcher, vr)
        if vr in ("DA", "DT") and _full_date(text):
            kinds.append("full date")
        if vr == "PN" and not _PSEUDONYM.fullmatch(text.rstrip("^=")):
            kinds.append("person name")
        if vr == "AS" and _over_90(text):
            kinds.append("age over 89")
    return kinds


def _over_90(text: str) -> bool:
    """True for an age above 90 years: Safe Harbor allows only "90 or older" (090Y)."""
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}.get(text[3:4].upper())
    if len(text) != 4 or not text[:3].isdigit() or per_year is None:
        return False
    return int(text[:3]) / per_year > 90


def _full_date(text: str) -> bool:
    """True if a DA/DT value (or range) keeps more than the year: a month/day not 0101."""
    for part in text.split("-"):
        rest = part.strip()[4:8]
        if rest and rest not in ("01", "0101"):
            return True
    return False


def _walk(ds: Dataset, prefix: str, matcher: _Matcher) -> Iterator[tuple[str, str]]:
    """(where, kind) of everything identifying in `ds` and its sequence items."""
    for key in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every value)
        tag = int(key)
        raw = ds.get_item(tag, keep_deferred=True)
        private = " private" if tag >> 16 & 1 else ""
        vr = raw.VR if raw is not None else None
        vr = vr or (None if private else dictionary_vr(tag)) or "UN"
        where = prefix + _segment(tag)
        if vr == "SQ":
            for kind in _element_kinds(tag, vr, [], matcher):
                yield where + private, kind
            for index, item in enumerate(ds[tag].value or []):
                yield from _walk(item, f"{where}[{index}] > ", matcher)
            continue
        texts = _values(ds, tag, vr)
        for kind in _element_kinds(tag, vr, texts, matcher):
            yield where + private, kind


def check_dicom(
    path: Path, originals: Mapping[str, str] | None, policy: TextPolicy | None = None
) -> list[Leak]:
    """Everything identifying in one DICOM output, at every depth, file meta included.

    Reports any original value (`originals`, from `collect_originals`) in any text
    value, and regardless of originals: dates with a month or day, person names that
    are not `ANON` pseudonyms, private, overlay and curve elements, values shaped like
    phone numbers, e-mail addresses, SSNs, written dates or IDs (see
    `data/phi_patterns.toml`), a non-zero preamble and PatientIdentityRemoved not YES.
    A file that cannot be read is reported as such: what cannot be checked is not clean.
    With a `policy`, the pixels are read too, every distinct frame as displayed, as a
    PNG's are (`check_png`): burned-in text in a DICOM output is a finding.
    """
    return _check_dicom(path, _Matcher(originals), policy)


def _check_dicom(path: Path, matcher: _Matcher, policy: TextPolicy | None = None) -> list[Leak]:
    name = str(path)
    try:
        with path.open("rb") as f:
            head = f.read(132)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True, defer_size=_DEFER)
            found = list(_walk(ds.file_meta, "file meta > ", matcher))
            found += _walk(ds, "", matcher)
    except Exception:  # pydicom raises many types on corrupt input; all mean "unreadable"
        return [Leak(name, "file", "unreadable DICOM")]
    leaks = [Leak(name, where, kind) for where, kind in found]
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        leaks.insert(0, Leak(name, "file", "unreadable DICOM"))  # truncated: read as empty
    if head[128:132] == b"DICM" and any(head[:128]):
        leaks.insert(0, Leak(name, "preamble", "non-zero preamble"))
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        leaks.append(Leak(name, "PatientIdentityRemoved", "PatientIdentityRemoved not YES"))
    if policy is not None and "PixelData" in ds:
        leaks += _dicom_pixel_leaks(name, ds, matcher, policy)
    return list(dict.fromkeys(leaks))


def _dicom_pixel_leaks(name: str, ds: Dataset, matcher: _Matcher, policy: TextPolicy) -> list[Leak]:
    """Text in a DICOM output's pixels (`ds` as the header check read it, its pixel data
    deferred until now): each distinct frame rendered, then read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = pixels.decode(ds, name)
    except DeidError:
        return [Leak(name, "pixels", "undecodable pixel data")]
    leaks: list[Leak] = []
    seen: set[bytes] = set()
    for index, frame in enumerate(frames):
        digest = pixels.frame_digest(frame)
        if digest in seen:
            continue
        seen.add(digest)
        where = f"{name} frame {index + 1}" if len(frames) > 1 else name
        leaks += _pixel_leaks(where, _planes(pixels.render(ds, frame)), matcher, policy)
    return leaks


# --- Context notes and file names ------------------------------------------------------


def check_text(path: Path, originals: Mapping[str, str] | None) -> list[Leak]:
    """Original values and identifying patterns in a plain-text output (a context note)."""
    return _check_text(path, _Matcher(originals))


def _check_text(path: Path, matcher: _Matcher) -> list[Leak]:
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return [Leak(name, "file", "unreadable file")]
    leaks = [
        Leak(name, f"line {number}", kind)
        for number, line in enumerate(text.splitlines(), start=1)
        for kind in _text_kinds(line, matcher)
    ]
    return list(dict.fromkeys(leaks))


def _name_leaks(path: Path, root: Path | None, matcher: _Matcher) -> list[Leak]:
    """Original values in an output's file name or the folders below the output root."""
    try:
        parts = path.relative_to(root).parts if root is not None else (path.name,)
    except ValueError:
        parts = (path.name,)
    kinds = matcher.kinds(" / ".join(parts))
    return [Leak(str(path), "file name", kind) for kind in kinds]


# --- PNG -------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that only describe the pixels; any other chunk can carry text or other data.
_IMAGE_CHUNKS = frozenset(b"IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB sBIT bKGD pHYs".split())
_CHUNK_KINDS = {
    b"tEXt": "text metadata",
    b"zTXt": "text metadata",
    b"iTXt": "text metadata",
    b"eXIf": "EXIF metadata",
    b"tIME": "modification time",
}
_SMALL_IMAGE = 1000  # long side (px) below which the image is enlarged before OCR
_MIN_EDGE = 40  # grey levels between neighbouring pixels that a pen stroke reaches
_EDGE_NOISE = 4.0  # ... or this many times the image's median step (grain), if more
_OUTSIDE = "text that is not kept"


def _chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, data) of each chunk of a PNG, or None if the bytes are not one.

    Bytes after the IEND chunk come last, with an empty type.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    found: list[tuple[bytes, bytes]] = []
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None
        found.append((kind, data[pos + 8 : pos + 8 + length]))
        pos = end
        if kind == b"IEND":
            if pos < len(data):
                found.append((b"", data[pos:]))
            return found
    return None


def _chunk_text(kind: bytes, body: bytes) -> str:
    """The readable text of a tEXt, zTXt or iTXt chunk (keyword included), else ""."""
    try:
        if kind == b"tEXt":
            return body.replace(b"\0", b" ").decode("latin-1")
        if kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            return (keyword + b" " + _inflate(rest[1:])).decode("latin-1")
        if kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            language, _, rest = rest.partition(b"\0")
            translated, _, text = rest.partition(b"\0")
            if compressed:
                text = _inflate(text)
            return b" ".join((keyword, language, translated, text)).decode("utf-8", "replace")
    except (zlib.error, IndexError):
        return ""
    return ""


def _inflate(data: bytes) -> bytes:
    """Decompress a text chunk, at most 1 MiB of it: enough to find a name in."""
    return zlib.decompressobj().decompress(data, 1 << 20)


def _chunk_leaks(name: str, data: bytes, matcher: _Matcher) -> list[Leak] | None:
    """Metadata chunks of a PNG; anything beyond the pixels is a place to hide a name."""
    chunks = _chunks(data)
    if chunks is None:
        return None
    leaks = []
    for kind, body in chunks:
        if not kind:
            leaks.append(Leak(name, "after PNG IEND", "data after the image end"))
            continue
        if kind in _IMAGE_CHUNKS:
            continue
        where = f"PNG {kind.decode('latin-1')} chunk"
        leaks.append(Leak(name, where, _CHUNK_KINDS.get(kind, "unexpected chunk")))
        leaks += [Leak(name, where, k) for k in _text_kinds(_chunk_text(kind, body), matcher)]
    return leaks


def _greys(data: bytes) -> list[np.ndarray]:
    """The grey images to read: luma and, for colour, the brightest channel.

    The brightest channel shows coloured text (yellow on black) that luma dims.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("I", "I;16", "I;16B", "F"):
            values = np.asarray(image, dtype=np.float64)
            low, high = float(values.min()), float(values.max())
            scaled = (values - low) * (255.0 / (high - low or 1.0))
            return [np.rint(scaled).astype(np.uint8)]
        rgb = image.convert("RGB") if image.mode not in ("L", "RGB") else image
        return _planes(np.asarray(rgb))


def _planes(image: np.ndarray) -> list[np.ndarray]:
    """A grey or RGB uint8 image as the grey images to read: luma and, for colour, the
    brightest channel when it differs."""
    if image.ndim == 2:
        return [image]
    luma = np.asarray(Image.fromarray(image).convert("L"))
    brightest = image.max(axis=2)
    return [luma] if np.array_equal(luma, brightest) else [luma, brightest]


def _ocr_scale(height: int, width: int) -> float:
    long_side = max(height, width)
    if long_side >= _SMALL_IMAGE:
        return 1.0
    return 3.0 if long_side <= 400 else 2.0


def _edges(greys: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Per pixel, the largest grey step to a 4-neighbour over all grey images, and the
    least step a pen stroke makes on this image: more than its grain typically does.
    """
    out = np.zeros(greys[0].shape, dtype=np.int16)
    grain = 0.0
    for grey in greys:
        g = grey.astype(np.int16)
        dx = np.abs(np.diff(g, axis=1))
        dy = np.abs(np.diff(g, axis=0))
        grain = max(grain, float(np.median(np.concatenate([dx.ravel(), dy.ravel()]))))
        for step, view_a, view_b in (
            (dx, np.s_[:, :-1], np.s_[:, 1:]),
            (dy, np.s_[:-1, :], np.s_[1:, :]),
        ):
            np.maximum(out[view_a], step, out=out[view_a])
            np.maximum(out[view_b], step, out=out[view_b])
    return out, max(float(_MIN_EDGE), _EDGE_NOISE * grain)


def _lines(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped into lines of text: side by side, sharing most of their height."""
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: (w.box.left, w.box.top)):
        b = word.box
        for line in lines:
            last = line[-1].box
            shared = min(b.bottom, last.bottom) - max(b.top, last.top)
            gap = b.left - last.right
            if shared >= 0.5 * min(b.height, last.height) and gap <= 1.5 * max(
                b.height, last.height
            ):
                line.append(word)
                break
        else:
            lines.append([word])
    return lines


def _read_line(line: Sequence[Word], matcher: _Matcher) -> tuple[list[tuple[str, Box]], set[int]]:
    """(kind, box) of original values and patterns on one line, and the words they cover."""
    text = ""
    starts = []
    for word in line:
        starts.append(len(text))
        text += word.text + " "
    spans = matcher.spans(text)
    for pattern in _patterns():
        spans += [(pattern.kind, m.start(), m.end()) for m in pattern.regex.finditer(text)]
    found = []
    used: set[int] = set()
    for kind, start, end in spans:
        hit = [
            i
            for i, word in enumerate(line)
            if starts[i] < end and start < starts[i] + len(word.text)
        ]
        found.append((kind, bounding(line[i].box for i in hit)))
        used.update(hit)
    return found, used


def _is_text(word: Word, edges: np.ndarray, floor: float, policy: TextPolicy) -> bool:
    """Whether a word not otherwise identified counts as text that is not kept.

    Two letters or digits or more, read with the policy's confidence, not kept text (a
    vocabulary word, technical number or allow-list entry, as the text search keeps
    them), and drawn with sharp edges: Tesseract reads blurred anatomy (three fingers
    as "ile") confidently, but burned-in text is drawn with a pen whose strokes jump in
    grey level.
    """
    token = word.text.strip().strip(string.punctuation).upper()
    if sum(ch.isalnum() for ch in token) < 2 or word.confidence < policy.min_confidence:
        return False
    if kept_token(token, policy) or kept_token(word.text.strip(), policy):
        return False
    box = word.box
    inside = edges[box.top : box.bottom, box.left : box.right]
    return inside.size > 0 and float(np.percentile(inside, 95)) >= floor


def _merge(found: Iterable[tuple[str, Box]]) -> list[tuple[str, Box]]:
    """Join overlapping boxes of the same kind (the passes read the same text)."""
    merged: list[tuple[str, Box]] = []
    for kind, box in found:
        for i, (other_kind, other) in enumerate(merged):
            if other_kind == kind and box.overlaps(other):
                merged[i] = (kind, bounding((box, other)))
                break
        else:
            merged.append((kind, box))
    return merged


def _pixel_leaks(
    name: str, greys: list[np.ndarray], matcher: _Matcher, policy: TextPolicy
) -> list[Leak]:
    """Text in the pixels: original values, patterns, and words outside the allow-list."""
    height, width = greys[0].shape
    scale = _ocr_scale(height, width)
    passes = [greys[0], 255 - greys[0], *greys[1:]]
    with ThreadPoolExecutor(max_workers=len(passes)) as pool:
        reads = list(pool.map(lambda image: read_words(image, scale=scale), passes))
    edges, floor = _edges(greys)
    identified: list[tuple[str, Box]] = []
    other: list[tuple[str, Box]] = []
    for words in reads:
        for line in _lines(words):
            found, used = _read_line(line, matcher)
            identified += found
            other += [
                (_OUTSIDE, word.box)
                for i, word in enumerate(line)
                if i not in used and _is_text(word, edges, floor, policy)
            ]
    named = _merge(identified)
    unnamed = [
        (kind, box)
        for kind, box in _merge(other)
        if not any(box.overlaps(known) for _, known in named)
    ]
    found = sorted(named + unnamed, key=lambda item: (item[1].top, item[1].left, item[0]))
    return [Leak(name, f"pixels x {b.left}-{b.right} y {b.top}-{b.bottom}", k) for k, b in found]


def check_png(path: Path, originals: Mapping[str, str] | None, policy: TextPolicy) -> list[Leak]:
    """Everything identifying in one PNG output: metadata chunks, then text in the pixels.

    Any tEXt, zTXt, iTXt, eXIf or tIME chunk is a leak, and so is any chunk an image
    does not need or data after the end. The pixels are read by Tesseract (enlarged if
    small, and inverted, so dark text on light shows too); words that spell an original
    value or an identifying pattern are reported by kind, and any other confident,
    sharply drawn word of two letters or digits that is not kept text (`kept_token`) as
    "text that is not kept". Locations only, never what was read. Raises
    `OcrUnavailableError` when Tesseract cannot run.
    """
    return _check_png(path, _Matcher(originals), policy)


def _check_png(path: Path, matcher: _Matcher, policy: TextPolicy) -> list[Leak]:
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError:
        return [Leak(name, "file", "unreadable file")]
    leaks = _chunk_leaks(name, data, matcher)
    try:
        greys = _greys(data) if leaks is not None else None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        greys = None
    if leaks is None or greys is None:
        return [*(leaks or []), Leak(name, "file", "unreadable PNG")]
    leaks += _pixel_leaks(name, greys, matcher, policy)
    return list(dict.fromkeys(leaks))


# --- A set of outputs ------------------------------------------------------------------

FileType = Literal["dicom", "png", "text", "other"]


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
        return self._count("dicom", "png", "text")

    @property
    def dicom(self) -> int:
        return self._count("dicom")

    @property
    def png(self) -> int:
        return self._count("png")

    @property
    def notes(self) -> int:
        return self._count("text")

    @property
    def skipped(self) -> int:
        """Files of no type this check knows (not DICOM, PNG or .txt): not looked at."""
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
        return (
            f"{self.checked} files checked ({self.dicom} DICOM, {self.png} PNG, "
            f"{self.notes} notes), {self.skipped} skipped: {found}"
        )


def _file_type(path: Path) -> FileType:
    """What to check a file as: by its content for images, by its ending for notes."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        head = b""
    if head == _PNG_SIGNATURE or path.suffix.lower() == ".png":
        return "png"
    if path.suffix.lower() == ".dcm" or sniff(path):
        return "dicom"
    if path.suffix.lower() == ".txt":
        return "text"
    return "other"


def _check_file(
    path: Path,
    root: Path | None,
    kind: FileType,
    matcher: _Matcher,
    policy: TextPolicy,
) -> FileCheck:
    leaks = _name_leaks(path, root, matcher)
    if kind == "dicom":
        leaks += _check_dicom(path, matcher, policy)
    elif kind == "png":
        leaks += _check_png(path, matcher, policy)
    elif kind == "text":
        leaks += _check_text(path, matcher)
    return FileCheck(str(path), kind, tuple(dict.fromkeys(leaks)))


def verify_outputs(
    outputs: Sequence[Path],
    originals: Sequence[Path] | None,
    policy: TextPolicy,
    *,
    jobs: int = 1,
    kept: Callable[[int, str], bool] | None = None,
    values: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Check every file under `outputs`, against the values of the `originals` if given.

    Without originals only the patterns apply (dates, names that are not pseudonyms,
    private elements, phone numbers ...); with them, any value of an original header
    found anywhere in an output, its file name included, is a leak. `jobs` files are
    checked at a time (OCR runs in Tesseract processes). Raises `UsageError` for a path
    that does not exist and `OcrUnavailableError` when PNGs cannot be read. `values`,
    if given, are the originals' values already collected (`collect_originals`), used
    instead of reading `originals` again.
    """
    if values is None and originals is not None:
        values = collect_originals(originals, kept)
    matcher = _Matcher(values)
    work: list[tuple[Path, Path | None]] = []
    for output in outputs:
        root = output if output.is_dir() else None
        work += [(path, root) for path in discover([output])]

    def check(item: tuple[Path, Path | None, FileType]) -> FileCheck:
        return _check_file(*item, matcher, policy)

    typed = [(path, root, _file_type(path)) for path, root in work]
    if jobs <= 1:
        return VerifyReport([check(item) for item in typed])
    # Only OCR runs in threads: it waits on Tesseract processes, and the header checks
    # silence pydicom's warnings, which cannot be done safely from several threads.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {i: pool.submit(check, item) for i, item in enumerate(typed) if item[2] == "png"}
        checked = [None if i in pending else check(item) for i, item in enumerate(typed)]
        return VerifyReport(
            [done if done is not None else pending[i].result() for i, done in enumerate(checked)]
        )
