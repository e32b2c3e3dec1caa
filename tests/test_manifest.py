"""The run's manifest: records stored as files end, the run's facts, refusal of a mismatch."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from deid.errors import DeidError, DiskFullError, ExitCode, UsageError
from deid.manifest import MANIFEST_NAME, Manifest, RunInfo
from deid.record import ActionRecord, BoxRecord, FileRecord

INFO = RunInfo("safe-harbor", "sha256:" + "a" * 64, "k-000000000001", "given")


def record(input_id: str, status: str = "written", digest: str = "") -> FileRecord:
    return FileRecord(
        f"DOE_JOHN/{input_id}",
        status,  # type: ignore[arg-type]
        input_id,
        digest or f"sha256:{input_id}",
        object="CT Image Storage",
        actions=[ActionRecord("PatientName", "pseudonymize")],
        boxes=[BoxRecord(0, 1, 2, 30, 12, "PHI match: person name")],
        seconds={"read": 0.01},
    )


def test_records_round_trip_without_the_input_path(tmp_path: Path) -> None:
    with Manifest.open(tmp_path, INFO) as manifest:
        written = record("a1")
        written.outputs = (str(tmp_path / "P" / "IM1.dcm"),)
        manifest.add(written, tmp_path)
        manifest.add(record("b2", "failed"), tmp_path)
    with Manifest.read(tmp_path) as manifest:
        back = list(manifest.records())
        assert manifest.info.profile == "safe-harbor" and manifest.info.run_id
    assert [r.input_id for r in back] == ["a1", "b2"]
    assert back[0].outputs == ("P/IM1.dcm",)
    assert back[0].boxes == written.boxes and back[0].actions == written.actions
    assert back[0].path == "a1"
    assert b"DOE_JOHN" not in (tmp_path / MANIFEST_NAME).read_bytes()


def test_finished_inputs_are_those_a_rerun_skips(tmp_path: Path) -> None:
    with Manifest.open(tmp_path, INFO) as manifest:
        for input_id, status in [("w", "written"), ("s", "skipped"), ("f", "failed")]:
            manifest.add(record(input_id, status), tmp_path)
        manifest.add(record("d", "duplicate", digest="sha256:w"), tmp_path)
        assert set(manifest.finished()) == {"w", "s", "d"}
        manifest.add(record("w2", "written", digest="sha256:w"), tmp_path)
        assert manifest.first_written(["sha256:w", "sha256:s"]) == {"sha256:w": "w"}


@pytest.mark.parametrize(
    ("other", "words"),
    [
        (RunInfo("research", "sha256:" + "b" * 64, INFO.key_id, "given"), "profile"),
        (RunInfo("safe-harbor", INFO.profile_digest, "k-999999999999", "given"), "key"),
    ],
)
def test_another_profile_or_key_is_refused(tmp_path: Path, other: RunInfo, words: str) -> None:
    Manifest.open(tmp_path, INFO).close()
    with pytest.raises(UsageError, match=words) as caught:
        Manifest.open(tmp_path, other)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "new --out" in caught.value.message


def test_a_record_survives_a_connection_that_was_never_closed(tmp_path: Path) -> None:
    manifest = Manifest.open(tmp_path, INFO)
    manifest.add(record("x"), tmp_path)
    rows = sqlite3.connect(tmp_path / MANIFEST_NAME).execute("SELECT count(*) FROM files")
    assert rows.fetchone() == (1,)


def test_reading_a_folder_without_a_manifest_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no deid-manifest"):
        Manifest.read(tmp_path)


def test_a_run_that_never_ended_is_unfinished(tmp_path: Path) -> None:
    with Manifest.open(tmp_path, INFO) as manifest:
        assert not manifest.unfinished()
        manifest.begin(3)
        manifest.end("finished")
        assert not manifest.unfinished()
        manifest.begin(3)  # killed: no end
    with Manifest.open(tmp_path, INFO) as manifest:
        assert manifest.unfinished()


def disk_full(manifest: Manifest) -> None:
    """Let the manifest's database grow no more: SQLite then fails every write that needs
    a new page with SQLITE_FULL, as on a full disk."""
    db = manifest._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def big_record(input_id: str) -> FileRecord:
    filled = record(input_id)
    filled.actions = [ActionRecord(f"PrivateTag{n}", "remove") for n in range(40)]
    return filled


def test_the_manifests_own_writes_on_a_full_disk_are_disk_full_errors(tmp_path: Path) -> None:
    with Manifest.open(tmp_path, INFO) as manifest:
        manifest.add(record("kept"), tmp_path)
        disk_full(manifest)
        stored = ["kept"]
        with pytest.raises(DiskFullError) as caught:
            for n in range(1000):
                manifest.add_all([big_record(f"a{n}"), big_record(f"b{n}")], tmp_path)
                stored += [f"a{n}", f"b{n}"]
        error = caught.value
        assert error.exit_code == ExitCode.DISK_FULL
        assert str(error) == (
            f"{tmp_path / MANIFEST_NAME}: the disk holding the output folder is full: "
            "the manifest cannot be written"
        )
        # the task that met the full disk left nothing half stored
        assert sorted(r.input_id for r in manifest.records()) == sorted(stored)
        with pytest.raises(DiskFullError) as caught:
            for _ in range(1000):
                manifest.begin(len(stored) + 5)
        assert caught.value.message.endswith(
            f"cannot be written; {len(stored)} of {len(stored) + 5} done "
            "(free some space, then run again to resume)"
        )
    with Manifest.read(tmp_path) as manifest:
        assert sorted(r.input_id for r in manifest.records()) == sorted(stored)


class FailingConnection:
    """An SQLite connection whose writes fail with the error SQLite gives as `code`
    (its extended result code); reads go through to the real connection."""

    def __init__(self, real: sqlite3.Connection, code: int, name: str, message: str) -> None:
        self.real, self.code, self.name, self.message = real, code, name, message

    def _error(self) -> sqlite3.OperationalError:
        error = sqlite3.OperationalError(self.message)
        error.sqlite_errorcode = self.code
        error.sqlite_errorname = self.name
        return error

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.split()[0].upper() in ("INSERT", "UPDATE", "BEGIN"):
            raise self._error()
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        raise self._error()

    def __enter__(self) -> FailingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.rollback()

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize(
    ("code", "name", "message", "error", "words"),
    [
        (778, "SQLITE_IOERR_WRITE", "disk I/O error", DiskFullError, "full or failing"),
        (13, "SQLITE_FULL", "database or disk is full", DiskFullError, "disk holding"),
        (5, "SQLITE_BUSY", "database is locked", UsageError, "another run is writing"),
        (8, "SQLITE_READONLY", "attempt to write a readonly database", UsageError, "can write"),
        (11, "SQLITE_CORRUPT", "database disk image is malformed", UsageError, "new --out"),
        (1, "SQLITE_ERROR", "SQL logic error", DeidError, "SQL logic error"),
    ],
)
def test_every_sqlite_error_of_a_write_is_a_one_line_error_naming_the_manifest(
    tmp_path: Path, code: int, name: str, message: str, error: type[DeidError], words: str
) -> None:
    with Manifest.open(tmp_path, INFO) as manifest:
        manifest.add(record("done"), tmp_path)
        manifest.begin(4)
        manifest._db = FailingConnection(manifest._db, code, name, message)  # type: ignore[assignment]
        writes = [
            lambda: manifest.add(record("x"), tmp_path),
            lambda: manifest.begin(4),
            lambda: manifest.end("finished"),
        ]
        for write in writes:
            with pytest.raises(error) as caught:
                write()
            text = str(caught.value)
            assert type(caught.value) is error and "\n" not in text
            assert text.startswith(f"{tmp_path / MANIFEST_NAME}: ") and words in text
            if error is DiskFullError:
                assert caught.value.exit_code == ExitCode.DISK_FULL
            if error is DeidError:
                assert caught.value.kind == "manifest"
        assert [r.input_id for r in manifest.records()] == ["done"]
    with Manifest.read(tmp_path) as manifest:
        assert manifest.unfinished()  # the end was never written


def test_a_file_that_is_no_manifest_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(b"not a database, but 512 bytes of it" * 16)
    for opening in (lambda: Manifest.open(tmp_path, INFO), lambda: Manifest.read(tmp_path)):
        with pytest.raises(UsageError) as caught:
            opening()
        assert str(caught.value) == (
            f"{tmp_path / MANIFEST_NAME}: the manifest cannot be opened "
            "(file is not a database); give a new --out folder"
        )
