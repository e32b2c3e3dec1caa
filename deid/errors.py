"""The exceptions the library raises, and the exit code each one maps to.

Every message says what went wrong, where, and what to do. No message may carry an
original identifying value: callers pass file paths and attribute keywords, never values.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; `deid --help` and the README list the same table."""

    OK = 0
    MIXED_FAILURES = 1
    USAGE = 2
    NOT_DICOM = 3
    UNREADABLE = 4
    MISSING_CODEC = 5
    REFUSED = 6
    OUTPUT_EXISTS = 7
    LEAK_FOUND = 8
    OCR_UNAVAILABLE = 9
    INTERNAL = 10
    DISK_FULL = 11
    TOO_LARGE = 12
    INTERRUPTED = 130


class DeidError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL
    kind: str = "error"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(DeidError):
    """The command line or a profile name is wrong; nothing was processed."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class ProfileError(UsageError):
    """A profile cannot be found, parsed or resolved."""

    kind = "profile"


class NotDicomError(DeidError):
    """The file is not a DICOM object (or is a DICOMDIR index); it is skipped."""

    exit_code = ExitCode.NOT_DICOM
    kind = "not-dicom"


class UnreadableError(DeidError):
    """The file looks like DICOM but is truncated or cannot be decoded."""

    exit_code = ExitCode.UNREADABLE
    kind = "unreadable"


class MissingCodecError(UnreadableError):
    """The pixel data uses a transfer syntax no installed plugin decodes."""

    exit_code = ExitCode.MISSING_CODEC
    kind = "missing-codec"


class RefusedError(DeidError):
    """The object is of a kind the profile does not de-identify (PDF, SR, faces...)."""

    exit_code = ExitCode.REFUSED
    kind = "refused"


class TooLargeError(DeidError):
    """The file asks for more than the limits allow (pixels, frames, bytes to decode or
    inflate); it is refused before the work, as a decompression bomb must be."""

    exit_code = ExitCode.TOO_LARGE
    kind = "too-large"


class CrashedError(UnreadableError):
    """The process decoding the file died (a crash in a codec, a signal); only this file
    is lost, and the batch goes on in a new worker."""

    kind = "crashed"


class InputChangedError(UnreadableError):
    """The input vanished or changed between finding it and reading it."""

    kind = "input-changed"


class DiskFullError(DeidError):
    """The disk holding the output folder is full: going on would only fail again."""

    exit_code = ExitCode.DISK_FULL
    kind = "disk-full"


class OutputExistsError(DeidError):
    """An output file is already there and `--overwrite` was not given."""

    exit_code = ExitCode.OUTPUT_EXISTS
    kind = "output-exists"


class LeakError(DeidError):
    """The check after writing found identifying content; the output was withdrawn."""

    exit_code = ExitCode.LEAK_FOUND
    kind = "leak"


class OcrUnavailableError(DeidError):
    """No Tesseract binary could be found or started; text cannot be checked."""

    exit_code = ExitCode.OCR_UNAVAILABLE
    kind = "ocr-unavailable"


class DetectorUnavailableError(OcrUnavailableError):
    """The text model or its runtime cannot be loaded; text cannot be searched for."""

    kind = "detector-unavailable"
