"""Batch runs: worker processes give what one process gives; one bad file stops nothing."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PHI, make_ct_dataset, safe_harbor_settings
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks
from pydicom.tag import Tag

from deid import batch, inputs, output, pipeline, pixelwork, reader, stages
from deid.errors import DiskFullError, ExitCode
from deid.manifest import MANIFEST_NAME, Manifest, RunInfo
from deid.record import FileRecord
from deid.settings import Settings
from deid.stages import STAGES


def _settings(out: Path, *, text: bool = False) -> Settings:
    return safe_harbor_settings(
        out, "test-batch", formats=frozenset({"dicom"}), tree=True, detect_text=text
    )


@pytest.fixture
def study(write_dicom: Callable[..., Path]) -> list[Path]:
    paths = []
    for index in range(6):
        ds = make_ct_dataset()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{index + 1}"
        ds.InstanceNumber = index + 1
        paths.append(write_dicom(ds, f"IM{index}"))
    broken = paths[2].with_name("BROKEN")
    broken.write_bytes(paths[2].read_bytes()[:300])
    notes = paths[2].with_name("notes.txt")
    notes.write_text("not an image")
    return inputs.discover([paths[0].parent])


@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_write_what_one_process_writes(
    tmp_path: Path, study: list[Path], jobs: int
) -> None:
    one = batch.run_paths(study, _settings(tmp_path / "one"), jobs=1)
    many = batch.run_paths(study, _settings(tmp_path / "many"), jobs=jobs)
    assert one.line() == many.line() == "8 files: 6 written, 1 skipped as not DICOM, 1 failed"
    assert one.exit_code == many.exit_code != 0

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    written = tree(tmp_path / "one")
    assert len(written) == 6
    assert written == tree(tmp_path / "many")
    assert {r.path for r in many.problems} == {
        str(study[0].with_name(n)) for n in ("BROKEN", "notes.txt")
    }


def _inputs(paths: list[Path]) -> list[batch.Input]:
    return [batch.Input(p, p.name, f"id-{p.name}") for p in paths]


def _outputs(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("deid-manifest")
    }


def _manifest(out: Path) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    return Manifest.open(out, RunInfo("safe-harbor", "sha256:x", "k-1", "given"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_run_resumes_where_it_stopped(
    tmp_path: Path, study: list[Path], jobs: int
) -> None:
    out = tmp_path / "out"
    settings = _settings(out)
    seen: list[str] = []

    def stop_after_three(record: FileRecord) -> None:
        seen.append(record.input_id)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with _manifest(out) as manifest:
        first = batch.run(
            batch.plan(_inputs(study), manifest),
            settings,
            jobs=jobs,
            manifest=manifest,
            on_result=stop_after_three,
        )
        assert first.interrupted and first.exit_code == ExitCode.INTERRUPTED
        # the manifest holds what the run counted: every file of the tasks that ended
        stored = {r.input_id for r in manifest.records()}
        assert set(seen) <= stored and len(stored) == sum(first.counts.values()) < len(study)
        done = set(manifest.finished())
    written_before = _outputs(out)
    assert not list(out.rglob(".deid-partial*"))

    with _manifest(out) as manifest:
        work = batch.plan(_inputs(study), manifest)
        assert work.done_before == len(done)
        second = batch.run(work, settings, jobs=jobs, manifest=manifest)
        assert not second.interrupted
        assert len(list(manifest.records())) == len(study)
    after = _outputs(out)
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in written_before.items())


def test_copies_of_an_input_are_duplicates_not_failures(tmp_path: Path, study: list[Path]) -> None:
    first = next(p for p in study if p.name == "IM0")
    copy = first.with_name("COPY_OF_IM0")
    copy.write_bytes(first.read_bytes())
    out = tmp_path / "out"
    with _manifest(out) as manifest:
        summary = batch.run(
            batch.plan(_inputs([first, copy]), manifest), _settings(out), manifest=manifest
        )
        assert (
            summary.line() == "2 files: 1 written, 1 duplicates, 0 skipped as not DICOM, 0 failed"
        )
        assert summary.exit_code == ExitCode.OK
        records = {r.input_id: r for r in manifest.records()}
    assert records["id-COPY_OF_IM0"].status == "duplicate"
    assert records["id-COPY_OF_IM0"].duplicate_of == "id-IM0"
    written = _outputs(out)
    with _manifest(out) as manifest:
        third = first.with_name("THIRD_COPY")
        third.write_bytes(first.read_bytes())
        work = batch.plan(_inputs([first, copy, third]), manifest)
        assert work.done_before == 2 and [i.name for i, _ in work.todo] == ["THIRD_COPY"]
        again = batch.run(work, _settings(out), manifest=manifest)
        records = {r.input_id: r for r in manifest.records()}
    assert again.counts["duplicate"] == 1 and again.exit_code == ExitCode.OK
    assert records["id-THIRD_COPY"].duplicate_of == "id-IM0"
    assert not records["id-THIRD_COPY"].outputs and _outputs(out) == written


def test_a_rerun_reads_only_the_inputs_whose_size_or_time_changed(
    tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    with _manifest(out) as manifest:
        batch.run(batch.plan(_inputs(study), manifest), _settings(out), manifest=manifest)
    touched, edited = (next(p for p in study if p.name == name) for name in ("IM0", "IM1"))
    os.utime(touched, ns=(1, 1))
    edited.write_bytes(edited.read_bytes() + b"\0\0")
    read: list[str] = []
    real_digest = batch.Seen.of

    def counting(path: Path) -> batch.Seen:
        read.append(path.name)
        return real_digest(path)

    monkeypatch.setattr(batch.Seen, "of", counting)
    with _manifest(out) as manifest:
        work = batch.plan(_inputs(study), manifest)
    assert sorted(read) == ["IM0", "IM1"]
    assert sorted(item.name for item, _ in work.todo) == ["BROKEN", "IM1"]
    assert work.done_before == 6


def test_records_time_every_stage_and_name_actions_not_values(
    tmp_path: Path, study: list[Path]
) -> None:
    summary_records: list[FileRecord] = []
    batch.run_paths(
        [p for p in study if p.name == "IM0"],
        _settings(tmp_path / "o"),
        on_result=summary_records.append,
    )
    (record,) = summary_records
    assert record.status == "written" and record.digest.startswith("sha256:")
    assert set(record.seconds) == {stage.name for stage in STAGES}
    assert {"path": "PatientName", "action": "pseudonymize"} in [
        {"path": a.path, "action": a.action} for a in record.actions
    ]
    assert "DOE" not in str(record.stored())


def _crash_on(name: str) -> Callable[..., FileRecord]:
    """`pipeline.process` that kills its own process on the file called `name`."""
    original = batch.process

    def process(path: Path, *args: object, **kwargs: object) -> FileRecord:
        if path.name == name:
            os.kill(os.getpid(), signal.SIGABRT)
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    return process


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_crashing_file_costs_only_itself(
    tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setattr(batch, "process", _crash_on("IM3"))
    summary = batch.run_paths(study, _settings(tmp_path / "out"), jobs=jobs)
    assert summary.line() == "8 files: 5 written, 1 skipped as not DICOM, 2 failed"
    crashed = [r for r in summary.problems if r.kind == "crashed"]
    assert [r.path.endswith("IM3") for r in crashed] == [True]
    assert "signal 6" in crashed[0].reason and crashed[0].exit_code == ExitCode.UNREADABLE
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 5


class Panic(BaseException):
    """What a Rust codec's panic looks like from Python: no Exception, no pickling."""

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("cannot pickle a panic")


def test_a_panic_in_a_codec_fails_the_file_not_the_batch(
    tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def panic(ds: object, path: str) -> None:
        raise Panic("index out of bounds")

    monkeypatch.setattr(pixelwork.pixels, "Frames", panic)
    summary = batch.run_paths(study, _settings(tmp_path / "out", text=True), jobs=2)
    failed = [r for r in summary.problems if r.status == "failed"]
    assert {r.kind for r in failed} == {"crashed", "unreadable"}
    assert all("Panic" in r.reason for r in failed if r.kind == "crashed")
    assert summary.counts["failed"] == 7


def test_a_full_disk_stops_the_batch_with_its_own_code(
    tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: object) -> list[Path]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.Transaction, "commit", full)
    summary = batch.run_paths(study, _settings(tmp_path / "out"), jobs=1)
    assert summary.stopped == "the disk holding the output folder is full"
    assert summary.exit_code == ExitCode.DISK_FULL
    assert sum(summary.counts.values()) < len(study)
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_full_disk_under_the_manifest_stops_the_batch_with_its_own_code(
    tmp_path: Path, study: list[Path]
) -> None:
    out = tmp_path / "out"
    images = [p for p in study if p.name.startswith("IM")]
    with _manifest(out) as manifest:
        first = batch.run(
            batch.plan(_inputs(images[:2]), manifest), _settings(out), manifest=manifest
        )
        assert first.counts["written"] == 2
        db = manifest._db
        # SQLite may grow the file no more: every write needing a page fails as SQLITE_FULL
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(DiskFullError):
            for n in range(1000):
                filler = FileRecord(f"filler{n}", "failed", f"filler{n}", reason="x" * 500)
                manifest.add(filler, out)
        stored = {r.input_id for r in manifest.records()}
        summary = batch.run(batch.plan(_inputs(study), manifest), _settings(out), manifest=manifest)
        assert summary.stopped.startswith("the disk holding the output folder is full")
        assert summary.exit_code == ExitCode.DISK_FULL
        assert summary.done == 2 and sum(summary.counts.values()) == 0
        assert {r.input_id for r in manifest.records()} == stored
    assert not list(out.rglob(f"{output.TEMP_PREFIX}*"))


def test_an_input_that_vanishes_is_a_failure_not_a_skip(tmp_path: Path, study: list[Path]) -> None:
    gone = next(p for p in study if p.name == "IM1")
    work = batch.plan(_inputs(study))
    gone.unlink()
    summary = batch.run(work, _settings(tmp_path / "out"), jobs=1)
    (record,) = [r for r in summary.problems if r.input_id == "id-IM1"]
    assert record.status == "failed" and record.kind == "input-changed"
    assert summary.exit_code != ExitCode.OK
    third = next(p for p in study if p.name == "IM2")
    third.unlink()
    again = batch.plan(_inputs([third]))
    assert again.settled[0].kind == "input-changed" and not again.todo


def test_library_warnings_are_recorded_by_kind_without_values(
    tmp_path: Path,
    study: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    read = reader.read

    def quoting_reader(path: Path, **kwargs: object) -> object:
        warnings.warn("Invalid value for VR TM: '1947-11-27'", UserWarning, stacklevel=1)
        return read(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages.reader, "read", quoting_reader)
    first = next(p for p in study if p.name == "IM0")
    record = pipeline.process(first, _settings(tmp_path / "out"))
    assert record.status == "written", record.reason
    assert record.warnings == ["Invalid value for VR TM"]
    summary = batch.run_paths([first], _settings(tmp_path / "again"), jobs=2)
    assert summary.counts["written"] == 1
    assert "1947" not in capfd.readouterr().err


def _with_raw(ds: Dataset, values: dict[str, tuple[str, str]]) -> Dataset:
    """`ds` with each keyword's value stored as given, under the VR given, bytes as they
    are: values pydicom would refuse to set, as a damaged or hostile file holds them."""
    for keyword, (vr, text) in values.items():
        tag = Tag(tag_for_keyword(keyword))
        data = text.encode("ascii") + b" " * (len(text) % 2)
        ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
    return ds


def _save(ds: Dataset, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's, about the values planted on purpose
        ds.save_as(path, enforce_file_format=True)


def test_pydicoms_own_warnings_about_planted_values_reach_neither_stderr_nor_the_manifest(
    tmp_path: Path,
) -> None:
    """pydicom warns as it converts a value it finds invalid, quoting the value: here an
    IS holding the patient's name and one holding the birth date. The real command runs
    in its own process, its workers' stderr included: neither the terminal nor any
    record holds a planted value, and the records keep each warning's kind and the
    attribute it was about."""
    folder = tmp_path / "in"
    folder.mkdir()
    birth = PHI["birth_date"]
    planted = {
        "A.dcm": {"AccessionNumber": ("IS", PHI["name"]), "StudyID": ("IS", f"{birth}.5")},
        "B.dcm": {
            "AccessionNumber": ("IS", f"{birth}.25"),
            "PatientBirthDate": ("DA", "1952-03-14"),
            "StudyTime": ("TM", PHI["name"]),
        },
    }
    for name, values in planted.items():
        ds = _with_raw(make_ct_dataset(), values)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            "1.2.3.4.1" if name == "A.dcm" else "1.2.3.4.2"
        )
        _save(ds, folder / name)
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from deid.cli import main; main()", "anonymize"]
    command += [str(folder), "--out", str(out), "--format", "dicom", "--no-ocr", "--key", "k"]
    done = subprocess.run([*command, "-j", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "2 files: 2 written" in done.stderr
    values = [PHI["name"], *PHI["name_words"], birth, "1952-03-14"]
    for value in values:
        assert value not in done.stderr and value not in done.stdout, value
    db = sqlite3.connect(out / MANIFEST_NAME)
    try:
        stored = [json.loads(data) for (data,) in db.execute("SELECT record FROM files")]
    finally:
        db.close()
    assert len(stored) == 2
    for data in stored:
        text = json.dumps(data)
        assert not [value for value in values if value in text], text
    kinds = sorted(kind for data in stored for kind in data["warnings"])
    assert "Invalid value for VR IS (AccessionNumber)" in kinds
    assert "Invalid value for VR IS (StudyID)" in kinds
    assert all(kind.endswith(")") for kind in kinds), kinds  # every one named its attribute


def test_inspect_shows_warnings_by_kind_and_attribute_never_their_values(tmp_path: Path) -> None:
    source = tmp_path / "planted.dcm"
    _save(_with_raw(make_ct_dataset(), {"AccessionNumber": ("IS", PHI["name"])}), source)
    command = [sys.executable, "-c", "from deid.cli import main; main()", "inspect"]
    done = subprocess.run(
        [*command, str(source), "--no-ocr"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert "Library warnings, by kind (1):\n  Invalid value for VR IS (AccessionNumber)\n" in (
        done.stdout
    )
    for value in (PHI["name"], *PHI["name_words"]):
        assert value not in done.stdout + done.stderr


def test_a_warning_while_a_value_is_converted_names_the_attribute_and_no_other(
    tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyword comes from the conversion itself: a warning given outside one (here,
    before the file is read) names no attribute, and pydicom's hooks are as they were
    once the file is done."""
    hooks_before = (hooks.raw_element_vr, hooks.raw_element_value)
    read = reader.read

    def warning_reader(path: Path, **kwargs: object) -> object:
        warnings.warn("Something odd: 'DOE^JOHN'", UserWarning, stacklevel=1)
        return read(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages.reader, "read", warning_reader)
    source = tmp_path / "planted.dcm"
    _save(_with_raw(make_ct_dataset(), {"AccessionNumber": ("IS", PHI["name"])}), source)
    record = pipeline.process(source, _settings(tmp_path / "out"))
    assert record.status == "written", record.reason
    assert record.warnings == ["Something odd", "Invalid value for VR IS (AccessionNumber)"]
    assert (hooks.raw_element_vr, hooks.raw_element_value) == hooks_before


def test_an_input_that_changes_after_it_was_seen_fails_as_changed(
    tmp_path: Path, study: list[Path]
) -> None:
    changing = next(p for p in study if p.name == "IM4")
    work = batch.plan(_inputs([changing]))
    changing.write_bytes(changing.read_bytes() + b"\0\0")
    summary = batch.run(work, _settings(tmp_path / "out"), jobs=1)
    (record,) = summary.problems
    assert record.kind == "input-changed" and "changed during the run" in record.reason
    assert not list((tmp_path / "out").rglob("*.dcm"))
