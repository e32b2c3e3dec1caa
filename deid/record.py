"""What happened to one input: the record each pipeline stage adds to.

A record is what a run keeps as proof: the input's content digest, what kind of object
it was, which action each attribute got (never a value), the boxes covered on each
frame, the outputs, the status with its reason, and the seconds each stage took. It is
written to the run's manifest as JSON and read back by `deid report` and `--json`.

Records never hold an original value. `path` is the input as the user named it, for
messages on the user's own terminal while the run goes on; it is not stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from deid.errors import ExitCode

Status = Literal["written", "skipped", "failed", "duplicate", "done"]

# Statuses a rerun does not repeat: the input was handled, for good or as not DICOM.
FINISHED: frozenset[str] = frozenset({"written", "skipped", "duplicate"})


@dataclass(frozen=True)
class BoxRecord:
    """One covered rectangle: `frame` is 0-based, or None for a box on every frame."""

    frame: int | None
    left: int
    top: int
    right: int
    bottom: int
    reason: str


@dataclass(frozen=True)
class ActionRecord:
    """One attribute the profile changed: its path (keywords, never values) and action."""

    path: str
    action: str


@dataclass
class FileRecord:
    """The outcome for one input, built up stage by stage."""

    path: str
    status: Status = "failed"
    input_id: str = ""
    digest: str = ""
    kind: str = ""
    object: str = ""
    reason: str = ""
    exit_code: int = ExitCode.OK
    outputs: tuple[str, ...] = ()
    actions: list[ActionRecord] = field(default_factory=list)
    boxes: list[BoxRecord] = field(default_factory=list)
    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    duplicate_of: str = ""
    warnings: list[str] = field(default_factory=list)
    seen: str = ""  # the input's size and time when processed: how a rerun knows it

    @property
    def regions(self) -> int:
        """How many boxes were covered, over all frames (a box on every frame once)."""
        return len(self.boxes)

    @property
    def changes(self) -> int:
        """How many attributes the profile changed."""
        return len(self.actions)

    def stored(self, out_dir: Path | None = None) -> dict[str, Any]:
        """The record as the manifest keeps it: no input path, outputs relative to the run."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        data["actions"] = [{"path": a.path, "action": a.action} for a in self.actions]
        data["boxes"] = [
            {
                "frame": b.frame,
                "left": b.left,
                "top": b.top,
                "right": b.right,
                "bottom": b.bottom,
                "reason": b.reason,
            }
            for b in self.boxes
        ]
        data["seconds"] = dict(self.seconds)
        data["warnings"] = list(self.warnings)
        outputs = self.outputs
        if out_dir is not None:
            data["outputs"] = [_relative(Path(p), out_dir) for p in outputs]
        else:
            data["outputs"] = list(outputs)
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> FileRecord:
        """A record read back from the manifest (its `path` is its input id)."""
        values = dict(data)
        values["outputs"] = tuple(values.get("outputs", ()))
        values["actions"] = [ActionRecord(**a) for a in values.get("actions", [])]
        values["boxes"] = [BoxRecord(**b) for b in values.get("boxes", [])]
        return cls(path=str(values.get("input_id", "")), **values)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


@dataclass(frozen=True)
class Seen:
    """An input as it was when the run looked at it: a later change fails the file."""

    digest: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Seen:
        before = path.stat()
        return cls(file_digest(path), before.st_size, before.st_mtime_ns)

    @classmethod
    def stat_of(cls, path: Path) -> Seen:
        """The input's size and time only; its digest is taken where it is read."""
        before = path.stat()
        return cls("", before.st_size, before.st_mtime_ns)

    @property
    def signature(self) -> str:
        return f"{self.size}:{self.mtime_ns}"

    def changed(self, path: Path) -> bool:
        now = path.stat()
        return (now.st_size, now.st_mtime_ns) != (self.size, self.mtime_ns)


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes: how a rerun knows an input, whatever its name."""
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
