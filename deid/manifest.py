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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deid import __version__
from deid.errors import DeidError, DiskFullError, UsageError
from deid.inputs import shown
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


# SQLite's primary result codes (the low byte of an error's extended code) this module
# tells apart: https://www.sqlite.org/rescode.html
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_RESUME = "free some space, then run again to resume"


class Manifest:
    """An open manifest. Every write is its own transaction; reads are cheap.

    Every SQLite error becomes a one-line `DeidError` naming the manifest file: a full
    disk (or a write the disk refuses) a `DiskFullError`, which stops a run, since
    whatever comes next would fail the same way; a manifest that is read-only, in use
    by another run or damaged a `UsageError`.
    """

    def __init__(self, path: Path, info: RunInfo) -> None:
        self.path = path
        self.info = info
        self._session: int | None = None
        self._inputs = 0
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc, "opened") from None
        try:
            with self._sqlite("opened"):
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._upgrade()
                self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _sqlite(self, doing: str) -> Iterator[None]:
        """SQLite errors inside the block raised as the `DeidError` they mean."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from None

    def _error(self, exc: sqlite3.Error, doing: str) -> DeidError:
        """The `DeidError` an SQLite error means, naming the manifest file and the reason
        (SQLite's messages name no value: every value is passed as a parameter)."""
        where = shown(str(self.path))
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_FULL:
            return DiskFullError(
                f"the disk holding the output folder is full: the manifest cannot be {doing}",
                where,
            )
        if code == _SQLITE_IOERR:
            return DiskFullError(
                f"the manifest cannot be {doing} (disk I/O error): the disk holding the "
                "output folder is full or failing",
                where,
            )
        if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN):
            return UsageError(
                f"the manifest cannot be {doing} ({exc}): give an output folder you can write",
                where,
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return UsageError(
                f"the manifest cannot be {doing} ({exc}): another run is writing to this "
                "output folder; let it end, or give a new --out folder",
                where,
            )
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or doing == "opened":
            return UsageError(
                f"the manifest cannot be {doing} ({exc}); give a new --out folder", where
            )
        error = DeidError(f"the manifest cannot be {doing} ({type(exc).__name__}: {exc})", where)
        error.kind = "manifest"
        return error

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
        manifest = cls(path, info)
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
        with self._sqlite("read"):
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
        with self._sqlite("written"), self._db:
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
        with self._sqlite("read"):
            return {str(i): str(d) for i, d in self._db.execute(query, tuple(FINISHED))}

    def done(self, input_id: str) -> tuple[str, str] | None:
        """(digest, seen) of an input finished before, or None."""
        marks = ",".join("?" * len(FINISHED))
        with self._sqlite("read"):
            row = self._db.execute(
                f"SELECT digest, seen FROM files WHERE input_id = ? AND status IN ({marks})",
                (input_id, *FINISHED),
            ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def finished_count(self) -> int:
        marks = ",".join("?" * len(FINISHED))
        query = f"SELECT COUNT(*) FROM files WHERE status IN ({marks})"
        with self._sqlite("read"):
            return int(self._db.execute(query, tuple(FINISHED)).fetchone()[0])

    def first_written(self, digests: Iterable[str]) -> dict[str, str]:
        """Digest -> the id of the input written first with that content, for those of
        `digests` written before (one query for a task's files)."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        with self._sqlite("read"):
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
        cost the client of a fast run as much as a file costs a worker).

        On a full disk none of them is stored (`DiskFullError`): a rerun does them again.
        """
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
        with self._sqlite("written"), self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)

    def records(self) -> Iterator[FileRecord]:
        """Every stored record, in the order the inputs finished."""
        query = "SELECT record FROM files ORDER BY finished, input_id"
        with self._sqlite("read"):
            stored = self._db.execute(query).fetchall()
        for (data,) in stored:
            yield FileRecord.from_stored(json.loads(data))

    def begin(self, inputs: int) -> None:
        """Mark the start of a run of `inputs` inputs: until `end`, the folder's last run
        is unfinished, and a rerun sweeps what a killed run left. A full disk stops the
        run here (`DiskFullError`), saying how many inputs are done."""
        self._inputs = inputs
        with self._stopping():
            cursor = self._db.execute(
                "INSERT INTO sessions (started, version, inputs) VALUES (?, ?, ?)",
                (time.time(), __version__, inputs),
            )
        self._session = cursor.lastrowid

    def end(self, outcome: str) -> None:
        """Mark the end of the run `begin` started; a full disk raises as in `begin`."""
        if self._session is not None:
            with self._stopping():
                self._db.execute(
                    "UPDATE sessions SET ended = ?, outcome = ? WHERE rowid = ?",
                    (time.time(), outcome, self._session),
                )

    @contextmanager
    def _stopping(self) -> Iterator[None]:
        """As `_sqlite("written")`, for the writes outside the work on the files: a full
        disk's error also says how far the folder is, as a run stopped by one does."""
        try:
            with self._sqlite("written"):
                yield
        except DiskFullError as exc:
            try:
                done = self.finished_count()
            except DeidError:
                raise exc from None
            exc.message += f"; {done} of {max(self._inputs, done)} done ({_RESUME})"
            raise

    def unfinished(self) -> bool:
        """Whether the last run into this folder did not end normally (killed, interrupted)."""
        with self._sqlite("read"):
            row = self._db.execute("SELECT outcome FROM sessions ORDER BY rowid DESC LIMIT 1")
            last = row.fetchone()
        return last is not None and last[0] != "finished"

    def sessions(self) -> list[tuple[float, float | None, str, int, str | None]]:
        """Each run into this folder: started, ended, version, inputs, outcome."""
        with self._sqlite("read"):
            rows = self._db.execute("SELECT started, ended, version, inputs, outcome FROM sessions")
            return [tuple(row) for row in rows.fetchall()]  # type: ignore[misc]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
