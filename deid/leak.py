"""Leak: one finding of the check of finished outputs, without the value it found.

Its own module so that the checks of each kind of output (`deid.verify` for DICOM, notes
and whole sets of outputs, `deid.imagecheck` for PNG, JPEG and WebP) can all build
findings without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Leak"]


@dataclass(frozen=True)
class Leak:
    """Something identifying in an output: which file, where in it, and what kind.

    `where` is an attribute path (`ReferencedStudySequence[0] > PatientName`,
    `(0029,1001) private`, `file meta > SourceApplicationEntityTitle`), a PNG chunk
    (`PNG tEXt chunk`), a JPEG segment (`JPEG APP1 segment at byte 20`), a pixel box
    (`pixels x 10-120 y 5-30`), a line of a note or report page (`line 3`), a place in
    the manifest (`files record 2 > reason`) or `file name`. A leak never carries the
    value it found, so reports can be printed, logged and kept.
    """

    file: str
    where: str
    kind: str

    def line(self) -> str:
        """`file: where: kind`, the line `deid verify` prints."""
        return f"{self.file}: {self.where}: {self.kind}"
