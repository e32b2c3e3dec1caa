"""Damaged and hostile files: whatever the bytes, `process` ends with a record, never a raise.

Each test mutates a valid file built here (conftest's CT slice with planted PHI, and
pydicom's own RLE, JPEG baseline, JPEG 2000, deflated and big-endian files with the same
PHI planted) and runs `deid.pipeline.process` on the mutant. The mutations follow the
file's structure, found by a small parser below: truncation at every structural point,
wrong lengths, wrong VRs, bytes changed inside codestreams, absurd image dimensions,
numbers that are not numbers, transfer syntaxes that are unknown or lie, undefined-length
sequences without their delimiters, and sequences nested thousands deep.

Only what must hold for any input is asserted: a record with status written, skipped or
failed, and never an internal error (only a `DeidError`, with its reason, may end a
file); no output at all (no partial file) for a file that was not written; and no
planted value in the record's reason or warnings, nor on the terminal. Examples are
derandomized and bounded, so the module takes about a minute on a 2-core machine.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pydicom
import pytest
from conftest import PHI, add_patient_phi, make_ct_dataset, safe_harbor_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from typer.testing import CliRunner

from deid import pipeline
from deid.classify import MAX_NESTING
from deid.cli import app
from deid.errors import ExitCode
from deid.output import TEMP_PREFIX
from deid.record import FileRecord

# ---- the planted values that must never show ------------------------------------------

PHI_STRINGS: tuple[str, ...] = tuple(
    sorted(
        {v for v in PHI.values() if isinstance(v, str)} | set(PHI["name_words"]),
        key=len,
        reverse=True,
    )
)


_PHI_PATTERNS = [
    (value, re.compile(rf"(?<![A-Z0-9]){re.escape(value.upper())}(?![A-Z0-9])"))
    for value in PHI_STRINGS
]


def phi_in(text: str) -> list[str]:
    """The planted values `text` holds as whole tokens (the name also as its words; the
    `doe` of `does` is no finding)."""
    upper = text.upper()
    return [value for value, pattern in _PHI_PATTERNS if pattern.search(upper)]


# ---- the valid files the mutants start from -------------------------------------------

# pydicom's test files by what they exercise; those missing from the installed pydicom
# are left out (looking one up must never download it).
PYDICOM_FILES = {
    "rle": "MR_small_RLE.dcm",
    "jpeg": "SC_rgb_jpeg_dcmtk.dcm",
    "j2k": "JPEG2000.dcm",
    "deflate": "image_dfl.dcm",
    "bigendian": "MR_small_bigendian.dcm",
}
_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ct_undefined_lengths() -> Dataset:
    """The CT slice with every sequence and item of undefined length, so each has a
    delimiter to lose."""
    ds = make_ct_dataset()
    pending = [ds]
    while pending:
        current = pending.pop()
        for elem in current:
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
                    pending.append(item)
    return ds


@cache
def bases() -> dict[str, bytes]:
    """Each valid starting file by name, its PHI planted."""
    found = {"ct": _to_bytes(make_ct_dataset()), "ct-undefined": _to_bytes(_ct_undefined_lengths())}
    for name, file_name in PYDICOM_FILES.items():
        if not (_TEST_FILES / file_name).is_file():
            continue
        ds = pydicom.dcmread(str(get_testdata_file(file_name)))
        add_patient_phi(ds)
        found[name] = _to_bytes(ds)
    return found


# ---- the structure of a file, as offsets ----------------------------------------------

_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_EXPLICIT_LE = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.",
)


@dataclass(frozen=True)
class Element:
    """One element's bytes: header at `at`, length field at `length_at`, value at
    `value_at`; `end` is past its items and delimiter."""

    tag: int
    vr: bytes
    at: int
    length_at: int
    length_size: int
    value_at: int
    length: int
    end: int
    depth: int


@dataclass
class Layout:
    """Where everything is in a file: elements, sequence items, delimiters and the
    fragments of encapsulated pixel data (the offset table excluded)."""

    elements: list[Element] = field(default_factory=list)
    items: list[tuple[int, int]] = field(default_factory=list)
    delimiters: list[tuple[int, int]] = field(default_factory=list)  # (at, tag)
    fragments: list[tuple[int, int]] = field(default_factory=list)  # (value_at, end)
    body: bool = False  # whether the dataset after the file meta was parsed

    def points(self, kind: str) -> list[tuple[int, int]]:
        """(start, stop) ranges where a cut falls at the structural point `kind`."""
        meta = [e for e in self.elements if e.tag >> 16 == 2]
        body = [e for e in self.elements if e.tag >> 16 != 2]
        if kind == "preamble":
            return [(1, 128)]
        if kind == "dicm":
            return [(128, 133)]
        if kind == "meta-group-length":
            return [(e.at, e.end + 1) for e in meta[:1]]
        if kind == "meta":
            return [(e.at, e.end + 1) for e in meta[1:]]
        if kind == "element-header":
            return [(e.at + 1, e.value_at) for e in body]
        if kind == "value":
            return [
                (e.value_at + 1, e.value_at + e.length)
                for e in body
                if e.length != _UNDEFINED and e.length > 1
            ]
        if kind == "sequence":
            return [(e.value_at, e.end) for e in body if e.vr == b"SQ" and e.end > e.value_at]
        if kind == "item":
            return [(at, end) for at, end in self.items]
        if kind == "fragment":
            return [(at - 8, end) for at, end in self.fragments]
        raise ValueError(kind)


@cache
def layout(data: bytes) -> Layout:
    """Parse the file meta, and the dataset too when it is explicit VR little endian."""
    found = Layout()
    if data[128:132] != b"DICM":
        return found
    pos = 132
    syntax = ""
    while pos + 8 <= len(data) and int.from_bytes(data[pos : pos + 2], "little") == 2:
        elem = _element(data, pos, 0, found)
        if elem.tag == 0x00020010:
            syntax = data[elem.value_at : elem.value_at + elem.length].rstrip(b"\0 ").decode()
        pos = elem.end
    if syntax.startswith(_EXPLICIT_LE) and syntax != "1.2.840.10008.1.2.1.99":
        _walk(data, pos, len(data), 0, found)
        found.body = True
    return found


def _element(data: bytes, pos: int, depth: int, found: Layout) -> Element:
    tag = (int.from_bytes(data[pos : pos + 2], "little") << 16) | int.from_bytes(
        data[pos + 2 : pos + 4], "little"
    )
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        length_at, size = pos + 8, 4
    else:
        length_at, size = pos + 6, 2
    length = int.from_bytes(data[length_at : length_at + size], "little")
    value_at = length_at + size
    if vr == b"SQ":
        end = _sequence(data, value_at, length, depth + 1, found)
    elif tag == _PIXEL_DATA and length == _UNDEFINED:
        end = _fragments(data, value_at, found)
    else:
        end = value_at + length
    elem = Element(tag, vr, pos, length_at, size, value_at, length, end, depth)
    found.elements.append(elem)
    return elem


def _walk(data: bytes, pos: int, end: int, depth: int, found: Layout) -> int:
    """Elements from `pos` to `end` or to an item delimiter; the position after."""
    while pos + 8 <= end:
        tag = _tag_at(data, pos)
        if tag == _ITEM_END:
            found.delimiters.append((pos, tag))
            return pos + 8
        pos = _element(data, pos, depth, found).end
    return pos


def _sequence(data: bytes, pos: int, length: int, depth: int, found: Layout) -> int:
    end = len(data) if length == _UNDEFINED else pos + length
    while pos + 8 <= end:
        tag = _tag_at(data, pos)
        item_length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag == _SEQUENCE_END:
            found.delimiters.append((pos, tag))
            return pos + 8
        if tag != _ITEM:
            return end
        stop = len(data) if item_length == _UNDEFINED else pos + 8 + item_length
        item_end = _walk(data, pos + 8, stop, depth, found)
        found.items.append((pos, item_end))
        pos = item_end
    return pos


def _fragments(data: bytes, pos: int, found: Layout) -> int:
    first = True
    while pos + 8 <= len(data):
        tag = _tag_at(data, pos)
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag == _SEQUENCE_END:
            return pos + 8
        if not first:
            found.fragments.append((pos + 8, pos + 8 + length))
        first = False
        pos += 8 + length
    return pos


def _tag_at(data: bytes, pos: int) -> int:
    return (int.from_bytes(data[pos : pos + 2], "little") << 16) | int.from_bytes(
        data[pos + 2 : pos + 4], "little"
    )


def structured_bases() -> list[str]:
    """Starting files whose whole dataset the parser above understands."""
    return [name for name, data in bases().items() if layout(data).body]


def encapsulated_bases() -> list[str]:
    return [name for name in structured_bases() if layout(bases()[name]).fragments]


# ---- running one mutant ------------------------------------------------------------------

ALLOWED = frozenset({"written", "skipped", "failed"})


@dataclass
class Outcome:
    """A mutant's record, and its DICOM output's bytes when one was written."""

    record: FileRecord
    files: list[Path]
    dicom: bytes | None = None


def run_mutant(data: bytes, capfd: pytest.CaptureFixture[str], where: Path) -> Outcome:
    """Process `data` as a file into a fresh output folder; assert what must always hold."""
    capfd.readouterr()
    with tempfile.TemporaryDirectory(dir=where) as folder:
        source = Path(folder) / "DOE_JOHN.dcm"
        source.write_bytes(data)
        out = Path(folder) / "out"
        out.mkdir()
        record = pipeline.process(
            source,
            safe_harbor_settings(
                out, "fuzz", formats=frozenset({"dicom", "png"}), detect_text=False
            ),
        )
        files = sorted(p for p in out.rglob("*") if p.is_file())
        captured = capfd.readouterr()
        assert isinstance(record, FileRecord)
        assert record.status in ALLOWED, record
        assert record.kind != "internal", f"internal error: {record.reason}"
        partial = [p.name for p in files if p.name.startswith(TEMP_PREFIX)]
        assert not partial, f"partial files left: {partial}"
        if record.status != "written":
            assert not files, f"{record.status} ({record.reason}) left {files}"
        said = " ".join([record.reason, *record.warnings, captured.out, captured.err])
        assert not phi_in(said), f"planted value in {said!r}"
        dicom = next((p.read_bytes() for p in files if p.suffix == ".dcm"), None)
        return Outcome(record, [p.relative_to(out) for p in files], dicom)


def fuzz(examples: int) -> settings:
    """Hypothesis settings for one test: `examples` mutants, the same ones every run.

    `DEID_FUZZ_SCALE=20` runs twenty times as many, for a longer search by hand.
    """
    scale = float(os.environ.get("DEID_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(examples * scale)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _cut(data: bytes, at: int) -> bytes:
    return data[: max(0, min(at, len(data)))]


def _put(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


# ---- truncation ------------------------------------------------------------------------

TRUNCATION_POINTS = (
    "preamble",
    "dicm",
    "meta-group-length",
    "meta",
    "element-header",
    "value",
    "sequence",
    "item",
    "fragment",
)


@fuzz(700)
@given(data=st.data())
def test_truncation_at_every_structural_point(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file cut anywhere: in the preamble, DICM, the file meta, an element's header or
    value, a sequence, an item, a fragment of encapsulated pixel data."""
    name = data.draw(st.sampled_from(sorted(bases())), label="base")
    original = bases()[name]
    kinds = [k for k in TRUNCATION_POINTS if layout(original).points(k)]
    kind = data.draw(st.sampled_from(kinds), label="point")
    start, stop = data.draw(st.sampled_from(layout(original).points(kind)), label="range")
    at = data.draw(st.integers(start, max(start, stop - 1)), label="cut at")
    run_mutant(_cut(original, at), capfd, tmp_path)


# ---- wrong lengths and VRs -------------------------------------------------------------


@fuzz(550)
@given(data=st.data())
def test_wrong_lengths(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An element's, item's or fragment's length made odd, huge, zero, or undefined
    where that is not allowed."""
    name = data.draw(st.sampled_from(structured_bases()), label="base")
    original = bases()[name]
    found = layout(original)
    fields = [(e.length_at, e.length_size, e.length) for e in found.elements]
    fields += [(at + 4, 4, end - at - 8) for at, end in found.items]
    fields += [(at - 4, 4, end - at) for at, end in found.fragments]
    at, size, length = data.draw(st.sampled_from(fields), label="length field")
    biggest = (1 << (8 * size)) - 1
    new = data.draw(
        st.sampled_from(
            sorted(
                {
                    length | 1,
                    length + 1 if length < biggest else 1,
                    max(0, length - 1),
                    0,
                    biggest - 1,
                    biggest,
                    len(original),
                    0x7FFFFFFF & biggest,
                }
            )
        ),
        label="new length",
    )
    run_mutant(_put(original, at, new.to_bytes(size, "little")), capfd, tmp_path)


_VRS = [
    *(v.decode() for v in sorted(_LONG_VRS)),
    *(v.decode() for v in sorted(_SHORT_VRS)),
    "ZZ",
    "\0\0",
    "  ",
    "sq",
    "ox",
]


@fuzz(550)
@given(data=st.data())
def test_wrong_vrs(data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An element's explicit VR replaced by another one, or by bytes that are no VR."""
    name = data.draw(st.sampled_from(structured_bases()), label="base")
    original = bases()[name]
    elements = layout(original).elements
    count = data.draw(st.integers(1, 3), label="how many")
    mutant = original
    for _ in range(count):
        elem = data.draw(st.sampled_from(elements), label="element")
        vr = data.draw(st.sampled_from(_VRS), label="vr")
        mutant = _put(mutant, elem.at + 4, vr.encode("latin-1"))
    run_mutant(mutant, capfd, tmp_path)


# ---- codestreams -----------------------------------------------------------------------


def _codestream_targets(fragment: bytes, base: str) -> dict[str, list[int]]:
    """Offsets in a fragment worth changing: JPEG marker segments, the J2K SIZ segment,
    the RLE header, anywhere."""
    targets: dict[str, list[int]] = {"anywhere": list(range(len(fragment)))}
    if base == "rle":
        targets["rle-header"] = list(range(min(64, len(fragment))))
    if fragment[:4] == b"\xff\x4f\xff\x51":
        siz = int.from_bytes(fragment[4:6], "big")
        targets["j2k-siz"] = list(range(2, min(4 + siz, len(fragment))))
    if fragment[:2] == b"\xff\xd8":
        markers = [
            i
            for i in range(len(fragment) - 1)
            if fragment[i] == 0xFF and fragment[i + 1] not in (0x00, 0xFF)
        ]
        # the marker byte, its segment length, and the first bytes of its segment
        targets["jpeg-markers"] = sorted(
            {i + k for i in markers for k in range(1, 10) if i + k < len(fragment)}
        )
    return targets


@fuzz(500)
@given(data=st.data())
def test_codestream_bytes_changed(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Bytes changed inside encapsulated pixel data: JPEG markers and their segments,
    the JPEG 2000 SIZ segment, the RLE header, or anywhere in a fragment."""
    names = encapsulated_bases()
    if not names:
        pytest.skip("no encapsulated pixel data among pydicom's installed test files")
    name = data.draw(st.sampled_from(names), label="base")
    original = bases()[name]
    start, end = data.draw(st.sampled_from(layout(original).fragments), label="fragment")
    targets = _codestream_targets(original[start:end], name)
    target = data.draw(st.sampled_from(sorted(targets)), label="target")
    mutant = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6), label="how many")):
        offset = data.draw(st.sampled_from(targets[target]), label="offset")
        mutant[start + offset] = data.draw(st.integers(0, 255), label="byte")
    run_mutant(bytes(mutant), capfd, tmp_path)


# ---- what the header declares ------------------------------------------------------------

ABSURD = {
    "Rows": [0, 1, 3, 32768, 65535],
    "Columns": [0, 1, 3, 32768, 65535],
    "NumberOfFrames": ["0", "-1", "2", "7", "100000", "2147483647", "99999999999"],
    "BitsAllocated": [0, 1, 7, 12, 17, 32, 64, 65535],
    "BitsStored": [0, 1, 17, 33, 65535],
    "HighBit": [0, 16, 65535],
    "SamplesPerPixel": [0, 2, 3, 4, 65535],
    "PixelRepresentation": [1, 2, 65535],
    "PlanarConfiguration": [1, 2],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "YBR_FULL_422", "XX"],
}


@fuzz(400)
@given(data=st.data())
def test_absurd_dimensions(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Rows, Columns, Number of Frames, Bits Allocated and their kin set to values no
    image has, or that disagree with the pixel data."""
    name = data.draw(st.sampled_from(sorted(bases())), label="base")
    ds = pydicom.dcmread(io.BytesIO(bases()[name]))
    keywords = data.draw(
        st.lists(st.sampled_from(sorted(ABSURD)), min_size=1, max_size=3, unique=True),
        label="attributes",
    )
    for keyword in keywords:
        setattr(ds, keyword, data.draw(st.sampled_from(ABSURD[keyword]), label=keyword))
    run_mutant(_to_bytes(ds), capfd, tmp_path)


_BAD_NUMBERS = [b"XX", b"XX\\XX", b"1\\XX", b"NaN ", b"-inf", b"1e999 ", b"--1 ", b"\xff\xfe"]


@fuzz(250)
@given(data=st.data())
def test_numbers_that_are_not(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A decimal or integer string (DS, IS) holding `XX` or another non-number."""
    name = data.draw(st.sampled_from(structured_bases()), label="base")
    original = bases()[name]
    numbers = [
        e
        for e in layout(original).elements
        if e.vr in (b"DS", b"IS") and e.depth == 0 and e.tag >> 16 != 2
    ]
    elem = data.draw(st.sampled_from(numbers), label="element")
    value = data.draw(st.sampled_from(_BAD_NUMBERS), label="value")
    value += b" " * (len(value) % 2)
    header = original[elem.at : elem.length_at] + len(value).to_bytes(2, "little")
    run_mutant(original[: elem.at] + header + value + original[elem.end :], capfd, tmp_path)


def test_ds_xx_in_every_decimal_string(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`XX` in each DS of the CT slice, one at a time: none may end in an internal error."""
    original = bases()["ct"]
    numbers = [e for e in layout(original).elements if e.vr == b"DS" and e.depth == 0]
    assert numbers
    for elem in numbers:
        header = original[elem.at : elem.length_at] + (2).to_bytes(2, "little")
        outcome = run_mutant(
            original[: elem.at] + header + b"XX" + original[elem.end :], capfd, tmp_path
        )
        assert outcome.record.kind != "internal", (hex(elem.tag), outcome.record.reason)


# ---- transfer syntax ---------------------------------------------------------------------


def with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """`data` whose file meta names `uid` as its transfer syntax, group length fixed."""
    found = layout(data)
    meta = [e for e in found.elements if e.tag >> 16 == 2]
    syntax = next(e for e in meta if e.tag == 0x00020010)
    value = uid.encode() + b"\0" * (len(uid) % 2)
    element = data[syntax.at : syntax.length_at] + len(value).to_bytes(2, "little") + value
    mutant = data[: syntax.at] + element + data[syntax.end :]
    group = meta[0]
    if group.tag == 0x00020000:
        old = int.from_bytes(data[group.value_at : group.value_at + 4], "little")
        new = old + len(element) - (syntax.end - syntax.at)
        mutant = _put(mutant, group.value_at, new.to_bytes(4, "little"))
    return mutant


_SYNTAXES = [
    "1.2.3.4.5.6.7",
    "1.2.840.10008.1.2.4.999",
    "1.2.840.10008.1.2.1.98",
    "2.25.1234567890123456789",
    "",
    "NOT A UID",
    # known, but not what the bytes are
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.100",
]


@fuzz(120)
@given(name=st.sampled_from(sorted(bases())), uid=st.sampled_from(_SYNTAXES))
def test_transfer_syntax_unknown_or_wrong(
    name: str, uid: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A transfer syntax UID that no one knows, or a known one the bytes do not follow."""
    run_mutant(with_transfer_syntax(bases()[name], uid), capfd, tmp_path)


def test_unknown_transfer_syntax_is_a_clear_error(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An unknown transfer syntax is said to be one, not an internal error."""
    outcome = run_mutant(with_transfer_syntax(bases()["ct"], "1.2.3.4.5.6.7"), capfd, tmp_path)
    assert outcome.record.status == "failed"
    assert outcome.record.kind != "internal", outcome.record.reason


# ---- sequences ---------------------------------------------------------------------------


@fuzz(250)
@given(data=st.data())
def test_undefined_length_sequence_without_delimiter(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Undefined-length sequences and items whose delimiters are gone, the file maybe
    cut short after."""
    original = bases()["ct-undefined"]
    delimiters = layout(original).delimiters
    gone = data.draw(
        st.lists(st.sampled_from(delimiters), min_size=1, max_size=len(delimiters), unique=True),
        label="delimiters removed",
    )
    mutant = original
    for at, _ in sorted(gone, reverse=True):
        mutant = mutant[:at] + mutant[at + 8 :]
    if data.draw(st.booleans(), label="cut"):
        mutant = _cut(mutant, data.draw(st.integers(132, len(mutant)), label="at"))
    run_mutant(mutant, capfd, tmp_path)


def test_sequence_delimiter_missing_is_a_clear_error(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The outer sequence's delimiter gone: a clear error (or a file read past it), not
    an internal one."""
    original = bases()["ct-undefined"]
    at = max(at for at, tag in layout(original).delimiters if tag == _SEQUENCE_END)
    outcome = run_mutant(original[:at] + original[at + 8 :], capfd, tmp_path)
    assert outcome.record.kind != "internal", outcome.record.reason


def nested(depth: int, *, undefined: bool) -> bytes:
    """ReferencedImageSequence holding itself `depth` deep, the patient's name innermost;
    built without recursion, as bytes."""
    name = PHI["name"].encode()
    inner = b"\x10\x00\x10\x00PN" + len(name).to_bytes(2, "little") + name
    seq_head = b"\x08\x00\x40\x11SQ\0\0"
    if undefined:
        opening = seq_head + b"\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        closing = b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0"
        return opening * depth + inner + closing * depth
    value = inner
    for _ in range(depth):
        item = b"\xfe\xff\x00\xe0" + len(value).to_bytes(4, "little") + value
        value = seq_head + len(item).to_bytes(4, "little") + item
    return value


def with_nesting(depth: int, *, undefined: bool) -> bytes:
    """The CT slice whose ReferencedImageSequence is replaced by `nested(...)`."""
    original = bases()["ct"]
    seq = next(e for e in layout(original).elements if e.tag == 0x00081140 and e.depth == 0)
    return original[: seq.at] + nested(depth, undefined=undefined) + original[seq.end :]


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("depth", [64, 200, 300, 1000, 3000])
def test_deeply_nested_sequences(
    depth: int, undefined: bool, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Sequences nested as deep as allowed are written; deeper ones fail as unreadable
    with the nesting as the reason, never as an internal error (Python's recursion limit,
    met in the reader, the tag step or the writer, depending on the depth)."""
    outcome = run_mutant(with_nesting(depth, undefined=undefined), capfd, tmp_path)
    if depth <= MAX_NESTING:
        assert outcome.record.status == "written", outcome.record.reason
    else:
        assert (outcome.record.status, outcome.record.kind) == ("failed", "unreadable")
        assert "sequences nested" in outcome.record.reason


# ---- any byte, any base ------------------------------------------------------------------


@fuzz(700)
@given(data=st.data())
def test_bytes_changed_anywhere(
    data: st.DataObject, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A few bytes changed anywhere past the preamble, in any base (the deflated and
    big-endian ones included), the file maybe cut short."""
    name = data.draw(st.sampled_from(sorted(bases())), label="base")
    mutant = bytearray(bases()[name])
    for _ in range(data.draw(st.integers(1, 8), label="how many")):
        offset = data.draw(st.integers(128, len(mutant) - 1), label="offset")
        mutant[offset] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="cut"):
        mutant = mutant[: data.draw(st.integers(0, len(mutant)), label="at")]
    run_mutant(bytes(mutant), capfd, tmp_path)


def test_every_base_is_written(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The starting files themselves are valid: a mutant's failure is the mutation's."""
    for name, data in bases().items():
        outcome = run_mutant(data, capfd, tmp_path)
        assert outcome.record.status == "written", (name, outcome.record.reason)


# ---- what the fuzzing found: damaged elements get a reason ------------------------------


def with_vr(data: bytes, keyword: str, vr: str) -> bytes:
    """`data` whose top-level `keyword` element is stored under `vr`, bytes unchanged."""
    tag = tag_for_keyword(keyword)
    elem = next(e for e in layout(data).elements if e.tag == tag and e.depth == 0)
    return _put(data, elem.at + 4, vr.encode("latin-1"))


@pytest.mark.parametrize(
    ("keyword", "vr", "reason"),
    [
        ("StudyInstanceUID", "ZZ", "(0020,000D) StudyInstanceUID has no valid VR"),
        ("PatientAge", "ZZ", "(0010,1010) PatientAge has no valid VR"),
        ("RescaleSlope", "ZZ", "(0028,1053) RescaleSlope has no valid VR"),
        ("SOPClassUID", "FL", "(0008,0016) SOPClassUID holds 26 bytes, no whole number of FL"),
        ("FrameOfReferenceUID", "AT", "FrameOfReferenceUID holds 30 bytes, no whole number of AT"),
        ("FrameOfReferenceUID", "SS", "FrameOfReferenceUID is stored as SS where the standard"),
        ("PatientName", "US", "(0010,0010) PatientName is stored as US where the standard"),
    ],
)
def test_a_damaged_element_is_refused_by_name(
    keyword: str, vr: str, reason: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An unknown VR, a length no whole number of values, or text stored as numbers: the
    file fails as unreadable, naming the attribute (never its value), before any stage
    trips over it with an internal error."""
    outcome = run_mutant(with_vr(bases()["ct"], keyword, vr), capfd, tmp_path)
    assert (outcome.record.status, outcome.record.kind) == ("failed", "unreadable")
    assert reason in outcome.record.reason


def test_a_sequence_that_cannot_be_parsed_is_refused_by_name(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A nested sequence whose length cuts its item short."""
    original = bases()["ct"]
    outer = next(e for e in layout(original).elements if e.tag == 0x00081140)
    inner = next(e for e in layout(original).elements if e.tag == 0x00081120)
    assert inner.length_at == outer.value_at + 16
    outcome = run_mutant(_put(original, inner.length_at, b"\x07"), capfd, tmp_path)
    assert outcome.record.kind == "unreadable"
    assert "the sequence (0008,1120) ReferencedPatientSequence cannot be read" in (
        outcome.record.reason
    )


@pytest.mark.parametrize(
    ("keyword", "stored", "standard"),
    [("StudyID", "DS", "SH"), ("FrameOfReferenceUID", "LO", "UI"), ("AccessionNumber", "UI", "SH")],
)
def test_text_under_another_text_vr_is_rewritten_by_the_standard(
    keyword: str, stored: str, standard: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Text stored under another text VR (a StudyID as DS) is de-identified as the
    standard's VR says, and written under it: a pseudonym that is no number once failed
    as an internal error, and a UID stored as LO got no UID pseudonym."""
    outcome = run_mutant(with_vr(bases()["ct"], keyword, stored), capfd, tmp_path)
    assert outcome.record.status == "written", outcome.record.reason
    assert outcome.dicom is not None
    written = pydicom.dcmread(io.BytesIO(outcome.dicom))
    if keyword in written:
        written_vr = written[keyword].VR
        assert written_vr == standard
    if keyword == "FrameOfReferenceUID":
        assert str(written.FrameOfReferenceUID).startswith("2.25.")


def test_an_empty_transfer_syntax_is_written_as_read(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An empty Transfer Syntax UID: pydicom reads the dataset as it finds it, so the
    output names that encoding instead of failing in the writer as an internal error."""
    outcome = run_mutant(with_transfer_syntax(bases()["ct"], ""), capfd, tmp_path)
    assert outcome.record.status == "written", outcome.record.reason
    assert outcome.dicom is not None
    written = pydicom.dcmread(io.BytesIO(outcome.dicom))
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


# ---- the command line on a folder of mutants ---------------------------------------------


def cli_mutants() -> Iterator[tuple[str, bytes]]:
    """Some twenty mutants, one or two of each kind, chosen by a fixed seed."""
    rng = random.Random(20240817)
    ct = bases()["ct"]
    found = layout(ct)
    yield "good", ct
    for kind in ("dicm", "meta-group-length", "element-header", "value", "sequence"):
        start, stop = rng.choice(found.points(kind))
        yield f"cut-{kind}", _cut(ct, rng.randrange(start, max(start + 1, stop)))
    elem = rng.choice([e for e in found.elements if e.tag >> 16 != 2])
    yield "huge-length", _put(ct, elem.length_at, b"\xfe\xff" + b"\xff\xff"[: elem.length_size - 2])
    yield "wrong-vr", _put(ct, elem.at + 4, b"SQ")
    ds_elem = next(e for e in found.elements if e.vr == b"DS" and e.depth == 0)
    header = ct[ds_elem.at : ds_elem.length_at] + (2).to_bytes(2, "little")
    yield "ds-xx", ct[: ds_elem.at] + header + b"XX" + ct[ds_elem.end :]
    yield "unknown-syntax", with_transfer_syntax(ct, "1.2.3.4.5.6.7")
    undefined = bases()["ct-undefined"]
    at = max(a for a, tag in layout(undefined).delimiters if tag == _SEQUENCE_END)
    yield "no-delimiter", undefined[:at] + undefined[at + 8 :]
    yield "nested-3000", with_nesting(3000, undefined=True)
    ds = pydicom.dcmread(io.BytesIO(ct))
    ds.Rows, ds.Columns = 65535, 65535
    yield "huge-image", _to_bytes(ds)
    for name in encapsulated_bases():
        original = bases()[name]
        start, end = layout(original).fragments[0]
        mutant = bytearray(original)
        for _ in range(4):
            mutant[rng.randrange(start, min(end, start + 64))] = rng.randrange(256)
        yield f"codestream-{name}", bytes(mutant)
        yield f"cut-fragment-{name}", _cut(original, rng.randrange(start, end))
    for name in ("deflate", "bigendian"):
        if name in bases():
            original = bases()[name]
            yield f"cut-{name}", _cut(original, rng.randrange(132, len(original)))


DOCUMENTED_EXIT_CODES = frozenset(int(code) for code in ExitCode)


def test_cli_on_a_folder_of_mutants(tmp_path: Path) -> None:
    """`deid anonymize` on a folder of mutants: a documented exit code, every input
    accounted for, and no planted value in anything it prints."""
    folder = tmp_path / "mutants"
    folder.mkdir()
    mutants = dict(cli_mutants())
    assert len(mutants) >= 15
    for number, data in enumerate(mutants.values()):
        (folder / f"IM{number:04d}").write_bytes(data)
    result = CliRunner().invoke(
        app,
        [
            "anonymize",
            str(folder),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "dicom,png",
            "--key",
            "fuzz",
            "--no-ocr",
            "--jobs",
            "2",
            "--json",
        ],
    )
    text = result.output + (result.stderr or "")
    assert result.exit_code in DOCUMENTED_EXIT_CODES, (result.exit_code, text)
    assert not phi_in(text.replace(str(tmp_path), "")), text
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == len(mutants)
    assert {r["status"] for r in records} <= ALLOWED


def _ct_cut(length: int) -> bytes:
    return bases()["ct"][:length]


def _ct_with(find: bytes, offset: int, replacement: bytes) -> bytes:
    ct = bases()["ct"]
    at = ct.index(find) + offset
    return ct[:at] + replacement + ct[at + len(replacement) :]


def _ct_inserted_before(find: bytes, insert: bytes) -> bytes:
    ct = bases()["ct"]
    at = ct.index(find)
    return ct[:at] + insert + ct[at:]


@pytest.mark.parametrize(
    "mutant",
    [
        pytest.param(lambda: _ct_cut(142), id="cut-in-meta-group-length"),
        pytest.param(lambda: _ct_cut(153), id="cut-in-a-length-field"),
        pytest.param(lambda: _ct_with(b"\x02\x00\x00\x00UL", 4, b"ZZ"), id="meta-vr-ZZ"),
        pytest.param(lambda: _ct_with(b"\x28\x00\x30\x00DS", 6, b"\x07"), id="odd-ds-length"),
        pytest.param(lambda: _ct_with(b"\x28\x00\x10\x00US", 4, b"FD"), id="rows-as-FD"),
        pytest.param(
            lambda: _ct_inserted_before(b"\x28\x00\x10\x00US", b"\x28\x00\x08\x00IS\x06\x001e999 "),
            id="frames-1e999",
        ),
    ],
)
def test_damage_with_a_known_cause_is_no_internal_error(
    mutant: object, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each of these once ended as "internal error" (exit 10) though the cause is known."""
    outcome = run_mutant(mutant(), capfd, tmp_path)  # type: ignore[operator]
    assert outcome.record.kind != "internal", outcome.record.reason
