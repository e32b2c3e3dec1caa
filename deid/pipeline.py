"""One file's way through the program: the stages of `deid.stages`, run in order.

`process` never raises: every outcome, good or bad, is a `FileRecord`, so a batch goes
on past a bad file. It fails closed: if any stage fails the file gets no output at all.
`inspect` runs the same stages, less those that write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deid import tags, text
from deid.errors import DeidError, ExitCode, NotDicomError
from deid.record import FileRecord
from deid.settings import Settings
from deid.stages import STAGES, FileWork


def _run(work: FileWork) -> None:
    seconds = work.record.seconds
    for stage in STAGES:
        if stage.writes and not work.writing:
            continue
        start = time.perf_counter()
        try:
            stage.run(work)
        finally:
            seconds[stage.name] = round(time.perf_counter() - start, 4)


def process(path: Path, settings: Settings, *, digest: str = "", name: str = "") -> FileRecord:
    """De-identify one file into `settings.out_dir`; never raises.

    `name` is how messages show the input (relative to the input folder); `digest` its
    content digest when the caller has it already.
    """
    record = FileRecord(name or str(path), digest=digest)
    try:
        _run(FileWork(path, settings, record))
    except NotDicomError as exc:
        _fail(record, "skipped", exc)
    except DeidError as exc:
        _fail(record, "failed", exc)
    except Exception as exc:  # fail closed on anything unforeseen, without its text
        record.status, record.kind = "failed", "internal"
        record.reason = f"unexpected {type(exc).__name__}; no output written"
        record.exit_code = ExitCode.INTERNAL
    return record


def _fail(record: FileRecord, status: str, exc: DeidError) -> None:
    record.status = "skipped" if status == "skipped" else "failed"
    record.kind, record.reason, record.exit_code = exc.kind, exc.message, exc.exit_code
    record.outputs = ()


@dataclass
class Inspection:
    """What `anonymize` would do to one file, computed without writing anything."""

    path: str
    kind: str
    burned_in_annotation: str
    changes: list[tags.Change]
    regions: list[text.Region]
    preview: np.ndarray | None


def inspect(path: Path, settings: Settings, *, preview: bool = False) -> Inspection:
    """Plan the de-identification of one file; raises DeidError for a bad file."""
    work = FileWork(path, settings, FileRecord(str(path)), writing=False)
    _run(work)
    assert work.classification is not None and work.report is not None
    regions: list[text.Region] = []
    image = None
    found = work.pixels
    if found is not None and work.selected:
        index = work.selected[0]
        regions = found.regions(index) if settings.detect_text else list(found.fixed)
        if preview:
            image = found.shown(work.ds, index, settings.render)
    return Inspection(
        str(path),
        work.classification.kind,
        work.classification.burned_in_annotation,
        work.report.changes,
        regions,
        image,
    )
