"""DICOMDIR: walking the inputs of `deid share` and following a disc's index.

A patient's disc holds a DICOMDIR, an index of its files by ISO 9660 names: written
upper case, often with a `;1` version, and often mounted lower case. `deid.share.series`
takes its files from here: `walk` lists a folder, and `followed` the files a DICOMDIR
references, each found without regard to case and never outside the folder given. Kept
apart from the reading and grouping of headers because the rules of a disc's names are
their own concern. Problems and ignored files are recorded as (shown name, reason),
never with a path from outside the input given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from deid.inputs import discover_named, shown

__all__ = ["Candidate", "followed", "is_dicomdir_name", "walk"]


@dataclass
class Candidate:
    """A file that may be DICOM, found in the inputs: where it is, the name it is shown
    by, the real path it must stay within, and whether it was named on the command line
    rather than found in a folder (a file named on its own is meant to be sent)."""

    path: Path
    name: str
    root: Path  # the real path files must stay within
    given: bool = False  # named on the command line, not found in a folder


def walk(folder: Path, ignored: list[tuple[str, str]]) -> list[Candidate]:
    """Every file under `folder`, named relative to it; links out of it refused, and
    noted in `ignored` so the sender is told why a file was not taken."""
    refused: list[str] = []
    named = discover_named([folder], refused=refused)
    ignored.extend((name, "a link to a file outside the folder given") for name in refused)
    root = folder.resolve()
    return [Candidate(path, name, root) for path, name in named]


def is_dicomdir_name(name: str) -> bool:
    """DICOMDIR as a disc names it: any case, with an ISO 9660 version or a bare dot.
    A DICOMDIR is an index, never an image, and its folder is a disc."""
    return _disc_name(name) == "DICOMDIR"


def _disc_name(name: str) -> str:
    """A file name as ISO 9660 compares it: upper case, without `;1` and a final dot."""
    return name.split(";", 1)[0].rstrip(".").upper()


def followed(ds: Dataset, dicomdir: Candidate, problems: list[tuple[str, str]]) -> list[Candidate]:
    """The files a DICOMDIR references, resolved without regard to case below its
    folder; a missing or escaping reference is counted in `problems`, never read.

    Records that cannot be read, or none at all, are a problem too, and give no files:
    the DICOMDIR's folder is then searched by content instead."""
    folder = dicomdir.path.parent
    base = dicomdir.name.rsplit("/", 1)[0] + "/" if "/" in dicomdir.name else ""
    try:
        records = list(ds.get("DirectoryRecordSequence") or [])
    except Exception:  # pydicom parses the records lazily and fails on damaged items
        records = None
    if not records:
        why = "cannot be read" if records is None else "are missing (a truncated file?)"
        problems.append(
            (dicomdir.name, f"the DICOMDIR's records {why}; its folder was searched instead")
        )
        return []
    listing: dict[Path, dict[str, str]] = {}
    out: list[Candidate] = []
    missing = 0
    for record in records:
        try:
            raw = record.get("ReferencedFileID")
        except Exception:
            missing += 1
            continue
        if raw is None or raw == "":
            continue
        parts = [str(raw)] if isinstance(raw, str) else [str(p) for p in raw]
        path = _resolve(folder, parts, listing)
        if path is None or not path.resolve().is_relative_to(dicomdir.root):
            missing += 1
            continue
        name = shown(base + path.relative_to(folder).as_posix())
        out.append(Candidate(path, name, dicomdir.root))
    if missing:
        files = "file" if missing == 1 else "files"
        problems.append(
            (dicomdir.name, f"the DICOMDIR lists {missing} {files} not found under its folder")
        )
    return out


def _resolve(folder: Path, parts: list[str], listing: dict[Path, dict[str, str]]) -> Path | None:
    """`folder`/parts..., each part matched as a disc names it, or None."""
    here = folder
    for i, part in enumerate(parts):
        key = _disc_name(part.strip())
        if not key or key in (".", "..") or "/" in key or "\\" in key or "\0" in key:
            return None
        names = listing.get(here)
        if names is None:
            names = {}
            try:
                for entry in sorted(os.listdir(here)):
                    names.setdefault(_disc_name(entry), entry)
            except OSError:
                pass
            listing[here] = names
        actual = names.get(key)
        if actual is None:
            return None
        here = here / actual
        last = i == len(parts) - 1
        if last and not here.is_file():
            return None
        if not last and (here.is_symlink() or not here.is_dir()):
            return None
    return here
