"""Reading: recognise DICOM by content, not by file name, and read it safely.

Patient CDs hold files with no `.dcm` ending beside DICOMDIR, `.DS_Store` and viewer
programs, so a file is DICOM when its bytes say so. A file that is not DICOM, or is
truncated, becomes an error with a reason, never a crash of the batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError

from deid.errors import NotDicomError, UnreadableError

_FIRST_GROUPS = (0x0002, 0x0008)
PIXEL_DATA = 0x7FE00010
# Values larger than this are left in the file when read; only pixel data stays there.
_DEFER = 64 * 1024
_UNDEFINED = 0xFFFFFFFF


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


def read(path: Path, *, stop_before_pixels: bool = False) -> FileDataset:
    """Read a DICOM file, or raise NotDicomError / UnreadableError naming the file.

    The pixel data value stays in the file until something looks at it (`deferred`
    tells whether it still does): a header-only run copies it from file to file
    without holding it, so a multi-gigabyte cine loop costs no memory. Every other
    value is read.
    """
    if not path.is_file():
        raise NotDicomError("not a regular file", str(path))
    not_dicom = NotDicomError("not a DICOM file (no DICM marker, no DICOM header)", str(path))
    try:
        f = path.open("rb")
    except OSError:
        raise not_dicom from None
    try:
        with f:  # one open for the sniff and the read
            if not _starts_like_dicom(f.read(132)):
                raise not_dicom
            f.seek(0)
            ds = dcmread(f, force=True, stop_before_pixels=stop_before_pixels, defer_size=_DEFER)
            if not _only_pixels_deferred(ds, os.fstat(f.fileno()).st_size):
                f.seek(0)
                ds = dcmread(f, force=True, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        raise UnreadableError(
            f"truncated or corrupt DICOM header ({type(exc).__name__})", str(path)
        ) from None
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        raise UnreadableError("truncated or corrupt: the header has no SOP Class UID", str(path))
    return ds


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


def _only_pixels_deferred(ds: Dataset, size: int) -> bool:
    """Load every deferred value but whole, in-file native pixel data.

    Encapsulated (undefined length) values are read now. Pixel data that runs past the
    end of the file makes this False: the caller reads the file again without deferring,
    so the truncation is seen as it would be otherwise.
    """
    for tag, elem in list(ds._dict.items()):
        if not deferred(elem):
            continue
        raw = cast(RawDataElement, elem)
        if tag != PIXEL_DATA or raw.length == _UNDEFINED:
            ds.__getitem__(tag)  # reads the value from the file
        elif raw.value_tell + raw.length > size:
            return False
    return True
