"""Reading: recognise DICOM by content, not by file name, and read it safely.

Patient CDs hold files with no `.dcm` ending beside DICOMDIR, `.DS_Store` and viewer
programs, so a file is DICOM when its bytes say so. A file that is not DICOM, or is
truncated, becomes an error with a reason, never a crash of the batch.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_dataset, read_partial, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from deid.errors import NotDicomError, TooLargeError, UnreadableError
from deid.limits import (
    Declared,
    Limits,
    PixelStop,
    check_declared,
    check_pixel_element,
    check_tail,
    inflate,
    zeros_error,
)

_FIRST_GROUPS = (0x0002, 0x0008)
PIXEL_DATA = 0x7FE00010
# Values larger than this are left in the file when read; only pixel data stays there.
_DEFER = 64 * 1024
_UNDEFINED = 0xFFFFFFFF
# The file meta, which names the transfer syntax, starts within this many bytes.
_HEAD = 1024
_DEFLATED = str(DeflatedExplicitVRLittleEndian).encode("ascii")
# Zeros read where 4096 element headers should be (32 KiB) are no dataset; a file of up
# to 2 MiB is parsed in well under a second even if it is all zeros.
_ZERO_READS = 4096
_GUARD_ABOVE = 2 * 1024 * 1024


def sniff(path: Path) -> bool:
    """True if the file starts like DICOM: `DICM` at byte 128, or a bare dataset."""
    try:
        with path.open("rb") as f:
            return _starts_like_dicom(f.read(132))
    except OSError:
        return False


def _starts_like_dicom(head: bytes) -> bool:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    return group in _FIRST_GROUPS and element < 0x0100


class _ZeroRuns:
    """Reads that stop a parse which has met a run of zeros where elements should be:
    pydicom would read them as empty elements eight bytes at a time, for minutes, at any
    depth (in a sequence, or where the dataset should start), which `PixelStop` does not
    see. Files past `_GUARD_ABOVE` bytes and inflated data are read through it; a smaller
    file holds too few zeros to take long."""

    size: int
    where: str
    zero_reads = 0
    zeros_from = 0

    def read(self, n: int | None = -1, /) -> bytes:
        data: bytes = super().read(n)  # type: ignore[misc]
        if 0 < len(data) <= 8 and data.count(0) == len(data):
            if not self.zero_reads:
                self.zeros_from = self.tell() - len(data)  # type: ignore[attr-defined]
            self.zero_reads += 1
            if self.zero_reads > _ZERO_READS:
                raise zeros_error(self.size - self.zeros_from, self.where)
        else:
            self.zero_reads = 0
        return data


class _GuardedFile(_ZeroRuns, io.BufferedReader):
    def __init__(self, raw: io.FileIO, size: int, where: str) -> None:
        super().__init__(raw)
        self.size, self.where = size, where


class _GuardedBytes(_ZeroRuns, io.BytesIO):
    def __init__(self, data: bytes | memoryview, size: int, where: str) -> None:
        super().__init__(data)
        self.size, self.where = size, where


def read(
    path: Path, *, stop_before_pixels: bool = False, limits: Limits | None = None
) -> FileDataset:
    """Read a DICOM file, or raise NotDicomError / UnreadableError naming the file.

    The pixel data value stays in the file until something looks at it (`deferred`
    tells whether it still does): a header-only run copies it from file to file
    without holding it, so a multi-gigabyte cine loop costs no memory. Every other
    value is read.

    What the file asks for is checked before it is done (`deid.limits`, with `limits`
    or the defaults): parsing stops where zeros take the place of elements, deflated
    data inflates only as far as its header declares, and unless `stop_before_pixels`
    the image size the header declares and the length of its pixel data are checked
    (TooLargeError, UnreadableError).
    """
    if not path.is_file():
        raise NotDicomError("not a regular file", str(path))
    not_dicom = NotDicomError("not a DICOM file (no DICM marker, no DICOM header)", str(path))
    limits = limits or Limits()
    where = str(path)
    try:
        raw = io.FileIO(where, "r")
    except OSError:
        raise not_dicom from None
    try:
        with raw:  # one open for the sniff and the read
            size = os.fstat(raw.fileno()).st_size
            f = _GuardedFile(raw, size, where) if size > _GUARD_ABOVE else io.BufferedReader(raw)
            head = f.read(_HEAD)
            if not _starts_like_dicom(head[:132]):
                raise not_dicom
            f.seek(0)
            ds = None
            if _DEFLATED in head:
                ds = _read_deflated(f, where, stop_before_pixels, limits)
            if ds is None:
                ds = _read_stored(f, size, where, stop_before_pixels, limits)
    except (
        InvalidDicomError,
        BytesLengthException,
        EOFError,
        ValueError,
        KeyError,
        OSError,
        TypeError,
        OverflowError,
        NotImplementedError,
        struct.error,
    ) as exc:
        raise UnreadableError(
            f"truncated or corrupt DICOM header ({type(exc).__name__})", str(path)
        ) from None
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        raise UnreadableError("truncated or corrupt: the header has no SOP Class UID", str(path))
    return ds


def _read_stored(
    f: BinaryIO, size: int, where: str, stop_before_pixels: bool, limits: Limits
) -> FileDataset:
    """A file whose dataset is stored as it is (not deflated)."""
    stop = PixelStop(f, before_pixels=stop_before_pixels)
    ds = read_partial(f, stop.when, defer_size=_DEFER, force=True)
    if stop.zeros:
        check_tail(f, size, where)
    if not stop_before_pixels:
        _check_pixels(ds, size, where, limits)
    _read_deferred(ds, where, limits)
    return ds


def _read_deflated(
    f: BinaryIO, where: str, stop_before_pixels: bool, limits: Limits
) -> FileDataset | None:
    """A file of Deflated Explicit VR Little Endian, inflated no further than its header
    declares; None (and `f` rewound) when the file is of another transfer syntax."""
    preamble = read_preamble(f, True)
    meta = _read_file_meta_info(f)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        f.seek(0)
        return None
    buffer = _GuardedBytes(b"", 0, where)
    inflate(f, limits, where, lambda prefix: _inflated_length(prefix, where, limits), buffer)
    size = buffer.size = buffer.getbuffer().nbytes
    stop = PixelStop(buffer, before_pixels=stop_before_pixels)
    dataset = read_dataset(buffer, False, True, stop_when=stop.when)
    if stop.zeros:
        check_tail(buffer, size, where)
    ds = FileDataset(where, dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    if not stop_before_pixels:
        _check_pixels(ds, size, where, limits)
    return ds


def _inflated_length(prefix: bytes, where: str, limits: Limits) -> int | None:
    """The length a deflated dataset may inflate to, told from its first inflated bytes:
    up to the end of the pixel data its header declares (checked against `limits`), or
    up to an element of zeros; None while the prefix holds neither."""
    buffer = _GuardedBytes(prefix, len(prefix), where)
    stop = PixelStop(buffer, before_pixels=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a prefix ends mid-element
        try:
            header = read_dataset(buffer, False, True, stop_when=stop.when)
        except (EOFError, ValueError, KeyError, TypeError):
            return None
        except UnreadableError:  # zeros, deeper in: the dataset ends where they start
            return buffer.zeros_from
    if stop.zeros:
        return buffer.tell()
    if stop.pixel is None or stop.pixel[1] == _UNDEFINED:
        return None
    at, length = stop.pixel
    declared = Declared.of(header)
    if declared is None:
        if length > limits.pixel_bytes:
            raise TooLargeError(
                f"the pixel data holds {length} bytes; the limit is "
                f"{limits.max_pixel_mib} MiB ([limits] max_pixel_mib)",
                where,
            )
    else:
        check_declared(declared, limits, where)
        check_pixel_element(declared, length, length, where, native=True)
    return at + length


def _check_pixels(ds: Dataset, size: int, where: str, limits: Limits) -> None:
    """Check the image size the header declares, and the Pixel Data length against it
    and against the file, before the pixel data is read."""
    elem = ds._dict.get(PIXEL_DATA)  # type: ignore[call-overload]
    if elem is None:
        return
    declared = Declared.of(ds)
    if declared is not None:
        check_declared(declared, limits, where)
    if deferred(elem):
        length, available = int(elem.length), size - int(elem.value_tell)
    else:
        length = available = pixel_length(ds)
    if length != _UNDEFINED:
        longer = declared is not None and length > declared.native_bytes
        check_pixel_element(declared, length, available, where, native=longer and _native(ds))


def _native(ds: Dataset) -> bool:
    """Whether the pixel data is stored uncompressed, as far as the file meta tells."""
    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if uid is None:
        return True
    uid = UID(str(uid))
    return bool(uid.is_transfer_syntax and not uid.is_compressed)


def deferred(elem: Any) -> bool:
    """True for an element whose value pydicom left in the file."""
    return isinstance(elem, RawDataElement) and elem.value is None and elem.length != 0


def pixel_length(ds: Dataset) -> int:
    """Bytes of the Pixel Data value (0 if absent), without reading a deferred value."""
    elem = ds._dict.get(PIXEL_DATA)  # type: ignore[call-overload]
    if elem is None:
        return 0
    if deferred(elem):
        return int(elem.length)
    value = elem.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _read_deferred(ds: Dataset, where: str, limits: Limits) -> None:
    """Read every deferred value but whole, in-file native pixel data (whose length was
    checked against the file), once their sum is known to be within the header limit.

    Encapsulated (undefined length) values are read now.
    """
    pending: dict[int, int] = {
        tag: elem.length
        for tag, elem in ds._dict.items()
        if isinstance(elem, RawDataElement) and deferred(elem)
        if tag != PIXEL_DATA or elem.length == _UNDEFINED
    }
    total = sum(length for length in pending.values() if length != _UNDEFINED)
    if total > limits.header_bytes:
        raise TooLargeError(
            f"the header holds {total} bytes of large values; the limit is "
            f"{limits.max_header_mib} MiB ([limits] max_header_mib)",
            where,
        )
    for tag in pending:
        ds.__getitem__(tag)  # reads the value from the file
