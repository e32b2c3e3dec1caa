"""The run's manifest: records stored as files end, the run's facts, refusal of a mismatch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deid.errors import ExitCode, UsageError
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
