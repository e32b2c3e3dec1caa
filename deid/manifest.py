"""The run's manifest: one SQLite file in the output folder, a row per input as it ends.

SQLite (from the standard library) commits the rows of each task of files atomically
as it ends, so a run killed at any moment leaves a manifest that holds exactly the
inputs that were finished. The manifest
also says how the folder was made: deid version, profile name and digest, and a key id
(never the key). A rerun into the same folder resumes from it; a run with another
profile or key is refused, since its pseudonyms would not match the ones already there.

An input is known by a keyed id of its path relative to the input folder (an HMAC, as
paths on patient discs often carry names and the manifest stays in the output folder),
by the size and time it had when it was processed, and by the digest of its content: a
rerun skips an input whose id is done with the same size and time (or, when those
changed, the same content), and records an input with the content of a written one as
a duplicate. Lookups go to the database, not to tables in memory, so a run of millions
of files holds no more than a run of a hundred.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deid import __version__
from deid.errors import UsageError
from deid.record import FINISHED, FileRecord

MANIFEST_NAME = "deid-manifest.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    input_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    finished REAL NOT NULL,
    record TEXT NOT NULL,
    seen TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS files_by_digest ON files (digest, status);
CREATE TABLE IF NOT EXISTS sessions (
    started REAL NOT NULL,
    ended REAL,
    version TEXT NOT NULL,
    inputs INTEGER NOT NULL,
    outcome TEXT
);
"""


@dataclass(frozen=True)
class RunInfo:
    """How an output folder is made: what must match for a rerun to add to it."""

    profile: str
    profile_digest: str
    key_id: str
    key_kind: str  # "file" (--key-file), "given" (--key), "random" (a fresh key per folder)
    run_id: str = ""
    version: str = __version__

    def describe(self) -> str:
        return f"profile {self.profile} ({self.profile_digest[:19]}), key {self.key_id}"


class Manifest:
    """An open manifest. Every write is its own transaction; reads are cheap."""

    def __init__(self, path: Path, info: RunInfo) -> None:
        self.path = path
        self.info = info
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade()
        self._db.executescript(_SCHEMA)
        self._session: int | None = None

    def _upgrade(self) -> None:
        """Give a manifest from an earlier version the columns this one reads."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        if columns and "seen" not in columns:
            self._db.execute("ALTER TABLE files ADD COLUMN seen TEXT NOT NULL DEFAULT ''")

    @classmethod
    def open(cls, out_dir: Path, info: RunInfo) -> Manifest:
        """Open or start the manifest of `out_dir` for a run described by `info`.

        Raises `UsageError` when the folder was made with another profile or key.
        """
        path = out_dir / MANIFEST_NAME
        try:
            manifest = cls(path, info)
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"{MANIFEST_NAME} in the output folder cannot be opened ({exc}); "
                "give a new --out folder",
                str(out_dir),
            ) from None
        try:
            before = manifest.stored_info()
            if before is None:
                manifest._write_info(info)
            else:
                manifest._check(before)
        except BaseException:
            manifest.close()
            raise
        return manifest

    @classmethod
    def read(cls, out_dir: Path) -> Manifest:
        """Open an existing manifest to read it (for reports); raises if there is none."""
        path = out_dir / MANIFEST_NAME
        if not path.is_file():
            raise UsageError(
                f"no {MANIFEST_NAME} here: not an output folder of deid anonymize", str(out_dir)
            )
        manifest = cls(path, RunInfo("", "", "", ""))
        info = manifest.stored_info()
        if info is None:
            raise UsageError(f"{MANIFEST_NAME} holds no run", str(out_dir))
        manifest.info = info
        return manifest

    def stored_info(self) -> RunInfo | None:
        rows = dict(self._db.execute("SELECT name, value FROM run").fetchall())
        if "profile_digest" not in rows:
            return None
        return RunInfo(
            profile=rows["profile"],
            profile_digest=rows["profile_digest"],
            key_id=rows["key_id"],
            key_kind=rows.get("key_kind", "given"),
            run_id=rows.get("run_id", ""),
            version=rows.get("version", ""),
        )

    def _write_info(self, info: RunInfo) -> None:
        run_id = info.run_id or secrets.token_hex(8)
        self.info = dataclasses.replace(info, run_id=run_id)
        values = {
            "profile": info.profile,
            "profile_digest": info.profile_digest,
            "key_id": info.key_id,
            "key_kind": info.key_kind,
            "run_id": run_id,
            "version": info.version,
            "created": str(time.time()),
        }
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)", values.items())

    def _check(self, before: RunInfo) -> None:
        now = self.info
        if before.profile_digest != now.profile_digest:
            raise UsageError(
                f"the output folder was made with {before.describe()}, not with profile "
                f"{now.profile} ({now.profile_digest[:19]}); give a new --out folder"
            )
        if before.key_id != now.key_id:
            raise UsageError(
                f"the output folder was made with key {before.key_id}, not {now.key_id}: "
                "its pseudonyms would not match; give the same --key-file (or --key), "
                "or a new --out folder"
            )
        self.info = before

    def finished(self) -> dict[str, str]:
        """The inputs a rerun skips (written, skipped as not DICOM, duplicates): id -> digest."""
        marks = ",".join("?" * len(FINISHED))
        query = f"SELECT input_id, digest FROM files WHERE status IN ({marks})"
        return {str(i): str(d) for i, d in self._db.execute(query, tuple(FINISHED))}

    def done(self, input_id: str) -> tuple[str, str] | None:
        """(digest, seen) of an input finished before, or None."""
        marks = ",".join("?" * len(FINISHED))
        row = self._db.execute(
            f"SELECT digest, seen FROM files WHERE input_id = ? AND status IN ({marks})",
            (input_id, *FINISHED),
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def finished_count(self) -> int:
        marks = ",".join("?" * len(FINISHED))
        query = f"SELECT COUNT(*) FROM files WHERE status IN ({marks})"
        return int(self._db.execute(query, tuple(FINISHED)).fetchone()[0])

    def first_written(self, digests: Iterable[str]) -> dict[str, str]:
        """Digest -> the id of the input written first with that content, for those of
        `digests` written before (one query for a task's files)."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            "SELECT digest, input_id FROM files WHERE status = 'written' "
            f"AND digest IN ({marks}) ORDER BY finished DESC",
            wanted,
        )
        return {str(d): str(i) for d, i in rows}

    def add(self, record: FileRecord, out_dir: Path) -> None:
        """Store one input's record; a later record of the same input replaces it."""
        self.add_all([record], out_dir)

    def add_all(self, records: list[FileRecord], out_dir: Path) -> None:
        """Store the records of one task in one transaction (one commit per file would
        cost the client of a fast run as much as a file costs a worker)."""
        if not records:
            return
        rows = [
            (
                r.input_id,
                r.digest,
                r.status,
                time.time(),
                json.dumps(r.stored(out_dir), sort_keys=True),
                r.seen,
            )
            for r in records
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)

    def records(self) -> Iterator[FileRecord]:
        """Every stored record, in the order the inputs finished."""
        query = "SELECT record FROM files ORDER BY finished, input_id"
        for (data,) in self._db.execute(query).fetchall():
            yield FileRecord.from_stored(json.loads(data))

    def begin(self, inputs: int) -> None:
        cursor = self._db.execute(
            "INSERT INTO sessions (started, version, inputs) VALUES (?, ?, ?)",
            (time.time(), __version__, inputs),
        )
        self._session = cursor.lastrowid

    def end(self, outcome: str) -> None:
        if self._session is not None:
            self._db.execute(
                "UPDATE sessions SET ended = ?, outcome = ? WHERE rowid = ?",
                (time.time(), outcome, self._session),
            )

    def unfinished(self) -> bool:
        """Whether the last run into this folder did not end normally (killed, interrupted)."""
        row = self._db.execute("SELECT outcome FROM sessions ORDER BY rowid DESC LIMIT 1")
        last = row.fetchone()
        return last is not None and last[0] != "finished"

    def sessions(self) -> list[tuple[float, float | None, str, int, str | None]]:
        """Each run into this folder: started, ended, version, inputs, outcome."""
        rows = self._db.execute("SELECT started, ended, version, inputs, outcome FROM sessions")
        return [tuple(row) for row in rows.fetchall()]  # type: ignore[misc]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
