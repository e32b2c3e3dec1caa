"""One file's way through the program: the stages of `deid.stages`, run in order.

`process` never raises: every outcome, good or bad, is a `FileRecord`, so a batch goes
on past a bad file. It fails closed: if any stage fails the file gets no output at all.
`inspect` runs the same stages, less those that write.
"""

from __future__ import annotations

import errno
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.hooks import hooks

from deid import tags, text
from deid.errors import (
    CrashedError,
    DeidError,
    DiskFullError,
    NotDicomError,
    UnreadableError,
    UsageError,
)
from deid.record import FileRecord, Seen
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


def process(
    path: Path, settings: Settings, *, seen: Seen | None = None, name: str = ""
) -> FileRecord:
    """De-identify one file into `settings.out_dir`; never raises (but for a stop).

    `name` is how messages show the input (relative to the input folder); `seen` is the
    input as the run first saw it (digest, size, time), when the caller has it. Library
    warnings are kept in the record, never printed: they quote the values they complain
    about.
    """
    record = FileRecord(name or str(path), digest=seen.digest if seen else "")
    with library_warnings() as caught:
        try:
            _run(FileWork(path, settings, record, seen=seen))
        except NotDicomError as exc:
            _fail(record, "skipped", exc)
        except DeidError as exc:
            _fail(record, "failed", exc)
        except OSError as exc:
            _fail(record, "failed", _os_error(exc, record.path))
        except RecursionError:  # only nesting recurses that deep: sequences in sequences
            _fail(record, "failed", UnreadableError(_TOO_DEEP, record.path))
        except Exception as exc:  # fail closed on anything unforeseen, without its text
            _fail(record, "failed", _unexpected(exc, record.path))
        except BaseException as exc:  # a panic from a native codec is no Exception
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            reason = f"decoder crashed ({type(exc).__name__}); no output written"
            _fail(record, "failed", CrashedError(reason, record.path))
    record.warnings = list(caught)
    return record


_TOO_DEEP = "corrupt or hostile: sequences nested too deep to read"


def _os_error(exc: OSError, where: str) -> DeidError:
    """An operating-system fault, named: a full disk stops the batch, others fail a file."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError("the disk holding the output folder is full", where)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UsageError(f"cannot write the output: {exc.strerror}", where)
    return _unexpected(exc, where)


def _unexpected(exc: BaseException, where: str) -> DeidError:
    error = DeidError(f"unexpected {type(exc).__name__}; no output written", where)
    error.kind = "internal"
    return error


def warning_kind(message: Warning | str, tag: int | None = None) -> str:
    """What a warning was about, without what it quotes: the words before the first
    quote or colon, letters and spaces only (`Invalid value for VR IS`), and the keyword
    of the attribute whose value pydicom was converting when it warned, if it was
    (`Invalid value for VR IS (AccessionNumber)`). The keyword is known from the
    conversion itself, never parsed out of the message: pydicom's messages quote the
    value and seldom name the element."""
    head = re.split(r"[:'\"(\[=]", str(message), maxsplit=1)[0]
    words = " ".join(w for w in head.split() if w.isalpha() or w.isupper())[:80]
    kind = words or type(message).__name__
    return kind if tag is None else f"{kind} ({_attribute(tag)})"


def _attribute(tag: int) -> str:
    """An attribute's keyword, or its tag for a private or unknown one (never a value)."""
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


# The tag of the element whose raw value pydicom is converting in this thread, if any:
# pydicom validates values as it converts them, which is where it warns about them.
_CONVERTING: ContextVar[int | None] = ContextVar("deid_converting", default=None)
_HOOKS = ("raw_element_vr", "raw_element_value")

_Hook = Callable[..., None]


def _attributed(callback: _Hook) -> _Hook:
    """pydicom's conversion `callback`, run with the tag of the element it converts
    known, so a warning it gives is told apart by attribute."""
    if getattr(callback, "deid_attributed", False):
        return callback

    def converting(raw: Any, data: dict[str, Any], **kwargs: Any) -> None:
        token = _CONVERTING.set(int(raw.tag))
        try:
            callback(raw, data, **kwargs)
        finally:
            _CONVERTING.reset(token)

    converting.deid_attributed = True  # type: ignore[attr-defined]
    return converting


@contextmanager
def library_warnings() -> Iterator[dict[str, None]]:
    """Every warning given inside the block, kept as its kind (`warning_kind`, once each),
    never shown: pydicom's warnings quote the values they complain about.

    pydicom's hooks for converting raw elements are wrapped for the block (the ones in
    place, whatever they are, still do the work), so a warning given while an
    element's value is converted carries that element's keyword. Like
    `warnings.catch_warnings`, not for use from several threads at once.
    """
    kinds: dict[str, None] = {}  # each kind once, in order

    def keep(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        kinds[warning_kind(message, _CONVERTING.get())] = None

    before = {name: getattr(hooks, name) for name in _HOOKS}
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = keep
        for name, callback in before.items():
            hooks.register_callback(name, _attributed(callback))
        try:
            yield kinds
        finally:
            for name, callback in before.items():
                hooks.register_callback(name, callback)


def _fail(record: FileRecord, status: Literal["skipped", "failed"], exc: DeidError) -> None:
    record.status = status
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
    warnings: list[str] = field(default_factory=list)


def look(path: Path, settings: Settings, *, name: str = "", first_only: bool = False) -> FileWork:
    """The stages that write nothing, on the frames `settings.frames` names: the file
    read, classified, its frames decoded and searched, its tags planned. Raises
    DeidError for a bad file (`name` is how messages show it)."""
    work = FileWork(path, settings, FileRecord(name or str(path)), writing=False)
    work.first_only = first_only
    try:
        _run(work)
    except RecursionError:
        raise UnreadableError(_TOO_DEEP, work.where) from None
    return work


def inspect(path: Path, settings: Settings, *, preview: bool = False) -> Inspection:
    """Plan the de-identification of one file; raises DeidError for a bad file.

    Library warnings are kept by kind (`Inspection.warnings`), never printed raw.
    """
    with library_warnings() as caught:
        work = look(path, settings, name=str(path), first_only=True)
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
        list(caught),
    )
