"""Reading: recognise DICOM by content, not by file name, and read it safely.

Patient CDs hold files with no `.dcm` ending beside DICOMDIR, `.DS_Store` and viewer
programs, so a file is DICOM when its bytes say so. A file that is not DICOM, or is
truncated, becomes an error with a reason, never a crash of the batch.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError

from deid.errors import NotDicomError, UnreadableError

_FIRST_GROUPS = (0x0002, 0x0008)


def sniff(path: Path) -> bool:
    """True if the file starts like DICOM: `DICM` at byte 128, or a bare dataset."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    return group in _FIRST_GROUPS and element < 0x0100


def read(path: Path, *, stop_before_pixels: bool = False) -> FileDataset:
    """Read a DICOM file fully, or raise NotDicomError / UnreadableError naming the file."""
    if not path.is_file():
        raise NotDicomError("not a regular file", str(path))
    if not sniff(path):
        raise NotDicomError("not a DICOM file (no DICM marker, no DICOM header)", str(path))
    try:
        ds = dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        raise UnreadableError(
            f"truncated or corrupt DICOM header ({type(exc).__name__})", str(path)
        ) from None
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        raise UnreadableError("truncated or corrupt: the header has no SOP Class UID", str(path))
    return ds
