"""The original identifying values of an input, and the leak check of a DICOM output.

Before a DICOM output is written, the pipeline collects the identifying values of the
original header (`original_values`) and looks for each of them in the output
(`output_leaks`): attribute by attribute, so a finding names where the value is, and then
in the serialized bytes, so a value in a place the attribute walk does not read is still
found. Findings name the kind of value and where it was seen, never the value itself.

`collect_originals` gathers the same values from a folder of originals, for the check of
finished outputs in `deid.verify`. Both checks let an output keep a value where the
original held it unchanged in an attribute that `may_keep_unchanged` allows: the one
rule they share, so the writer and the reviewer cannot disagree on it.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydicom._dicom_dict import DicomDictionary
from pydicom._uid_dict import UID_dictionary
from pydicom.charset import encode_string
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from deid.errors import DeidError
from deid.inputs import discover
from deid.profiles import (
    Profile,
    Survives,
    descriptor_tags,
    dictionary_vr,
    parse_selector,
)
from deid.reader import read
from deid.schema import data_toml
from deid.tags import TEXTUAL_VRS

_IDENTIFYING_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "AE", "UC")
_STRING_VRS = frozenset({*_IDENTIFYING_VRS, "DA", "DT", "UI", "CS"})
_PIXEL_DATA = 0x7FE00010
# Bytes next to a value that join it to a longer token: `TOSHIBA` is not in `TOSHIBA_MEC`.
_WORD = "A-Za-z0-9_"
_OUTSIDE_ATTRIBUTES = "header bytes"


@functools.cache
def _kind_by_tag() -> dict[int, str]:
    """Attributes whose values are collected, each with the kind a finding reports."""
    kinds = data_toml("original_values.toml")["kinds"]
    return {cast(int, tag_for_keyword(k)): str(kind) for k, kind in kinds.items()}


@functools.cache
def _uid_tags() -> frozenset[int]:
    keywords = data_toml("original_values.toml")["uids"]["keywords"]
    return frozenset(cast(int, tag_for_keyword(k)) for k in keywords)


@functools.cache
def _class_uid_tags() -> frozenset[int]:
    """UID attributes that name a class or a program, never one patient's object."""
    suffixes = tuple(data_toml("original_values.toml")["uids"]["class_suffixes"])
    return frozenset(
        int(tag)
        for tag, (vr, _, _, _, keyword) in DicomDictionary.items()
        if "UI" in vr and keyword.endswith(suffixes)
    )


@functools.cache
def _never_plain() -> tuple[frozenset[int], frozenset[str]]:
    """Tags and VRs whose values are identifiers or free text: those of the Safe Harbor
    identifier categories (`data/safe_harbor_categories.toml`), the free-text
    descriptors of Annex E (Clean Descriptors), and the VRs of UIDs and free text
    (`data/original_values.toml`)."""
    categories = data_toml("safe_harbor_categories.toml")["category"]
    selectors = (parse_selector(k) for c in categories for k in c["keywords"])
    tags = {tag for tag in selectors if isinstance(tag, int)} | set(descriptor_tags())
    never = data_toml("original_values.toml")["unchanged"]["never_vrs"]
    vrs = {vr for c in categories for vr in c["vrs"]} | set(never)
    return frozenset(tags), frozenset(vrs)


def may_keep_unchanged(tag: int, vr: str, profile: Profile) -> bool:
    """Whether an output may hold here, unchanged, a value the original held here: a
    standard attribute `profile` keeps that is neither an identifier nor free text.

    A knee MR whose patient is named `KNEE` keeps BodyPartExamined `KNEE`: it shows the
    body part, not the name. Free text is where people type names, and nothing says what
    a vendor put in a private element, so a copy there is a leak even when whole. The
    pipeline's check (`original_values`) and the check of finished outputs
    (`collect_originals` with a profile) both ask this.
    """
    tags, vrs = _never_plain()
    if tag >> 16 & 1 or tag >> 16 == 0x0002 or vr in vrs or tag in tags:
        return False
    return profile.survives(profile.rule_for(tag, vr)) in (Survives.WHOLE, Survives.LISTED)


@dataclass(frozen=True)
class Finding:
    """One identifying value seen in an output: its kind and where, never the value.

    `where` is an attribute (`BodyPartExamined`, `(0009,1001)`), with its sequence path
    (`ReferencedStudySequence[0] > StudyDescription`) or `file meta > ` before it, or
    `header bytes` for a value found only by the search of the serialized file.
    """

    kind: str
    where: str

    def line(self) -> str:
        """`kind in where`, as a message names a finding."""
        return f"{self.kind} in {self.where}"


def attribute_name(tag: int) -> str:
    """A standard attribute's keyword, else `(gggg,eeee)`: private keywords name
    nothing a reader can rely on."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return text if tag >> 16 & 1 else keyword_for_tag(tag) or text


def _raw_strings(
    ds: Dataset, wanted: Callable[[int, str], bool] | None = None, vrs: frozenset[str] = _STRING_VRS
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
                yield from _raw_strings(item, wanted, vrs)
            continue
        if vr not in vrs or (wanted is not None and not wanted(tag, vr)):
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
    kind_by_tag, uid_tags = _kind_by_tag(), _uid_tags()

    def add(value: str, kind: str) -> None:
        value = value.strip(" \0")
        if len(value) >= 3:
            found.setdefault(value, kind)

    def wanted(tag: int, vr: str) -> bool:
        """Could this element give a value below? Others are not even decoded."""
        identifying = (
            vr == "PN"
            or tag in kind_by_tag
            or tag in uid_tags
            or bool(tag >> 16 & 1 and tag & 0xFF00 and vr in _IDENTIFYING_VRS)
        )
        return identifying and not (kept is not None and kept(tag, vr))

    for tag, vr, text in _raw_strings(ds, wanted):
        kind = kind_by_tag.get(tag)
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
        elif tag in uid_tags and text.strip(" \0") not in UID_dictionary:
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
        return profile.survives(profile.rule_for(tag, vr)) is Survives.WHOLE

    return kept


def collect_originals(
    paths: Iterable[Path],
    kept: Callable[[int, str], bool] | None = None,
    *,
    profile: Profile | None = None,
) -> OriginalValues:
    """Identifying values of every DICOM original under `paths`, mapped to their kind.

    The union of `phi_values` over the originals, plus every UID they hold at any depth
    that is not a well-known standard UID (frame of reference, referenced instances):
    an output carrying one can be linked back to the original. Files that are not
    DICOM, or cannot be read, are skipped silently: they hold no header values an
    output could have copied.

    With the `profile` the outputs were made by, the result's `kept` holds (tag, value)
    for each value that some original held whole where `may_keep_unchanged` allows it:
    which output came from which original is not known, so any original's unchanged
    value there is allowed there.
    """
    found: dict[str, str] = {}
    unchanged: set[tuple[int, str]] = set()
    for path in discover(list(paths)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read(path, stop_before_pixels=True)
                values = phi_values(ds, kept)
                uids = [
                    text
                    for _, _, text in _raw_strings(
                        ds,
                        lambda tag, vr: (
                            vr == "UI"
                            and tag not in _class_uid_tags()
                            and not (kept is not None and kept(tag, vr))
                        ),
                    )
                ]
                if profile is not None:
                    unchanged.update(_unchanged(ds, profile))
        except DeidError:
            continue
        for text in uids:
            uid = text.strip(" \0")
            if len(uid) >= 3 and uid not in UID_dictionary:
                values.setdefault(uid, "original UID")
        for value, kind in values.items():
            found.setdefault(value, kind)
    return OriginalValues(found, frozenset(pair for pair in unchanged if pair[1] in found))


# --- The check of a DICOM output before it is written ---------------------------------


@dataclass(frozen=True, eq=False)
class OriginalValues(Mapping[str, str]):
    """An input's identifying values mapped to their kind (what `phi_values` gives), and
    where the original already held some of them in attributes that are not identifiers.

    `kept` holds (tag, value) for each identifying value that is also the whole value of
    a standard, coded attribute the profile keeps (`may_keep_unchanged`), such as a
    patient named `KNEE` whose BodyPartExamined is `KNEE`: the output holding that value
    in that attribute shows the body part, not the name. Anywhere else the value is
    still a leak, and so is a whole copy in free text (ImageComments) or a private
    element. `collect_originals` gives the same for a folder of originals.
    """

    kinds: dict[str, str]
    kept: frozenset[tuple[int, str]] = field(default_factory=frozenset)

    def __getitem__(self, value: str) -> str:
        return self.kinds[value]

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds)

    def __len__(self) -> int:
        return len(self.kinds)


def original_values(ds: Dataset, profile: Profile) -> OriginalValues:
    """What `output_leaks` looks for in the output of `ds` under `profile`: its
    identifying values (`phi_values`, less what the profile keeps on purpose), and the
    attributes the profile keeps that already hold one of them whole. Call it on the
    original, before the tags are changed."""
    values = phi_values(ds, kept_on_purpose(profile))
    kept = frozenset(pair for pair in _unchanged(ds, profile) if pair[1] in values)
    return OriginalValues(values, kept)


def _unchanged(ds: Dataset, profile: Profile) -> Iterator[tuple[int, str]]:
    """(tag, value) of every value of `ds` an output may keep unchanged under `profile`."""
    for tag, _, text in _raw_strings(
        ds, lambda tag, vr: may_keep_unchanged(tag, vr, profile), TEXTUAL_VRS
    ):
        value = text.strip(" \0")
        if len(value) >= 3:
            yield tag, value


def _written_texts(value: object, vr: str, encodings: list[str]) -> list[str]:
    """An element's value as the bytes written for it, decoded as Latin-1, split into
    its values for text VRs. Numbers of binary VRs are not text: left out."""
    if value is None:
        return []
    if isinstance(value, bytes):
        text = value.decode("latin-1")
        return text.split("\\") if vr in TEXTUAL_VRS else [text]
    if vr not in TEXTUAL_VRS:
        return []
    items = value if isinstance(value, list | tuple | MultiValue) else [value]
    texts = []
    for item in items:
        text = "" if item is None else str(item)
        if not text.isascii():
            try:
                text = encode_string(text, encodings).decode("latin-1")
            except (LookupError, UnicodeError, ValueError):
                text = text.encode("utf-8", "replace").decode("latin-1")
        texts.extend(text.split("\\"))
    return texts


def _output_texts(
    ds: Dataset, prefix: str, encodings: list[str]
) -> Iterator[tuple[str, int, list[str]]]:
    """(where, tag, texts) of every element of an output at any depth but its pixel data
    value, which the serialized header leaves out."""
    for key in list(ds._dict):
        tag = int(key)
        if tag == _PIXEL_DATA and not prefix:
            continue
        elem = ds.get_item(tag)  # reads a deferred value: the writer will too
        if elem is None:
            continue
        vr = elem.VR or dictionary_vr(tag) or "UN"
        where = prefix + attribute_name(tag)
        if vr == "SQ":
            for index, item in enumerate(ds[tag].value or []):
                yield from _output_texts(item, f"{where}[{index}] > ", encodings)
            continue
        yield where, tag, _written_texts(elem.value, vr, encodings)


@functools.lru_cache(maxsize=4096)
def _word(value: str) -> re.Pattern[str]:
    return re.compile(f"(?<![{_WORD}]){re.escape(value)}(?![{_WORD}])")


def _byte_hits(header: str, value: str) -> int:
    """How often `value`, as Latin-1 writes it, stands as a word of its own in `header`
    (serialized bytes decoded as Latin-1, one character per byte)."""
    needle = value.encode("latin-1", "replace").decode("latin-1")
    return len(_word(needle).findall(header)) if needle in header else 0


def _without_pixels(ds: Dataset, header: bytes) -> bytes:
    """`header` with the pixel data value zeroed where a writer left it in (big endian
    and deflated files are written whole): random pixels hold short strings by chance."""
    elem = ds._dict.get(BaseTag(_PIXEL_DATA))
    value = getattr(elem, "value", None)
    if isinstance(value, bytes) and len(value) > 64:
        at = header.find(value)
        if at >= 0:
            return header[:at] + bytes(len(value)) + header[at + len(value) :]
    return header


def output_leaks(ds: Dataset, header: bytes, values: Mapping[str, str]) -> list[Finding]:
    """Where the original identifying `values` are in an output, attribute by attribute.

    `ds` is the output dataset and `header` its serialized bytes but the pixel data
    value (`output.Serialized.header`). A value counts where it stands as a word of its
    own, case and all: a leak copies it verbatim, and a name part such as `PATIENT` is
    not in `Retain Patient Characteristics`, nor `TOSHIBA` in `TOSHIBA_MEC`. A value
    that is the whole value the original held in the same kept attribute
    (`OriginalValues.kept`) is not a finding there. The bytes are searched too: a value
    found there more often than in the attributes read is reported as in `header bytes`.
    """
    searched = _without_pixels(ds, header)
    if _none_in(searched, values, ds):
        return []
    kept = values.kept if isinstance(values, OriginalValues) else frozenset()
    encodings = cast(list[str], ds._character_set)
    findings: list[Finding] = []
    seen: Counter[str] = Counter()
    meta = getattr(ds, "file_meta", None)
    walks = [_output_texts(meta, "file meta > ", encodings)] if meta is not None else []
    walks.append(_output_texts(ds, "", encodings))
    for walk in walks:
        for where, tag, texts in walk:
            for text in texts:
                for value, kind in values.items():
                    if value not in text:
                        continue
                    hits = len(_word(value).findall(text))
                    seen[value] += hits
                    if hits and not (text.strip(" \0") == value and (tag, value) in kept):
                        findings.append(Finding(kind, where))
    header_text = searched.decode("latin-1")
    for value, kind in values.items():
        if _byte_hits(header_text, value) > seen[value]:
            findings.append(Finding(kind, _OUTSIDE_ATTRIBUTES))
    return _unique(findings)


# Character sets whose text holds a value only where its bytes hold it in Latin-1 or UTF-8.
_PLAIN_CHARSETS = frozenset({"iso8859", "latin_1", "UTF8", "utf_8"})


def _none_in(searched: bytes, values: Mapping[str, str], ds: Dataset) -> bool:
    """True when no value is anywhere in the bytes, even inside a word: then no attribute
    can hold one, and the walk that names attributes is skipped (most outputs)."""
    charsets = ds._character_set
    if not set([charsets] if isinstance(charsets, str) else charsets) <= _PLAIN_CHARSETS:
        return False
    for value in values:
        for codec in ("latin-1", "utf-8"):
            try:
                if value.encode(codec) in searched:
                    return False
            except UnicodeEncodeError:
                continue
    return True


def scan_bytes(header: bytes, values: Mapping[str, str], where: str) -> list[Finding]:
    """Search a serialized DICOM file, pixel data value left out, for identifying values.

    The search `output_leaks` falls back to, which names no attribute: every finding is
    at `where`. Values match case-sensitively and as words of their own (see
    `output_leaks`).
    """
    text = header.decode("latin-1")
    return _unique(
        Finding(kind, where) for value, kind in values.items() if _byte_hits(text, value)
    )


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
