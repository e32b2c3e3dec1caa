"""Batch runs on Dask: what the local pool writes, byte for byte, whatever befalls a worker."""

from __future__ import annotations

import hashlib
import os
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import safe_harbor_settings, write_series
from typer.testing import CliRunner

from deid import __version__, batch, cluster, clusterwork
from deid.cli import app
from deid.errors import ExitCode, UsageError
from deid.manifest import MANIFEST_NAME, Manifest, RunInfo
from deid.output import TEMP_PREFIX
from deid.record import FileRecord, Seen
from deid.settings import Settings

pytest.importorskip("distributed")

KEY = "a long secret kept by the study team"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One local cluster for the module: two worker processes of one thread each."""
    with cluster.start(cluster.Scheduler(workers=2)) as started:
        yield started


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study folder: a patient-named folder of ten CT slices."""
    root = tmp_path / "study"
    write_series(root / "DOE_JOHN" / "SERIES1", 10)
    return root


def _settings(out: Path, *, text: bool = False) -> Settings:
    settings: Settings = safe_harbor_settings(
        out, KEY, formats=frozenset({"dicom", "png"}), tree=True, detect_text=text
    )
    return settings


def _inputs(root: Path) -> list[batch.Input]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [batch.Input(p, p.relative_to(root).as_posix(), f"id-{p.name}") for p in files]


def _manifest(out: Path) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    return Manifest.open(out, RunInfo("safe-harbor", "sha256:x", "k-1", "given"))


def _tree(root: Path) -> dict[str, str]:
    """Every output by its path in the folder, as a digest; the manifest left out."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(MANIFEST_NAME)
    }


def _run(
    out: Path, root: Path, engine: batch.Engine | None, *, text: bool = False, **kwargs: Any
) -> tuple[batch.Summary, list[FileRecord]]:
    with _manifest(out) as manifest:
        work = batch.plan(_inputs(root), manifest)
        summary = batch.run(
            work, _settings(out, text=text), jobs=2, manifest=manifest, engine=engine, **kwargs
        )
        return summary, list(manifest.records())


def test_dask_writes_what_the_local_pool_writes(client: Any, study: Path, tmp_path: Path) -> None:
    local, local_records = _run(tmp_path / "local", study, None, text=True)
    with cluster.engine(client, tmp_path / "dask", [study]) as engine:
        dask, dask_records = _run(tmp_path / "dask", study, engine, text=True)
    assert dask.line() == local.line() == "10 files: 10 written, 0 skipped as not DICOM, 0 failed"
    written = _tree(tmp_path / "local")
    assert len(written) == 20 and all("DOE" not in name for name in written)
    assert _tree(tmp_path / "dask") == written
    outputs = {r.input_id: sorted(r.outputs) for r in local_records}
    assert {r.input_id: sorted(r.outputs) for r in dask_records} == outputs
    assert not list((tmp_path / "dask").glob(f"{TEMP_PREFIX}*")), "the probe was left behind"


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(
    client: Any, study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    killed: list[str] = []

    def kill_a_busy_worker(record: FileRecord) -> None:
        busy = [address for address, keys in client.processing().items() if keys]
        if not killed and busy:
            killed.append(busy[0])
            client.run(os._exit, 1, workers=busy[:1], on_error="ignore")

    with cluster.engine(client, out, [study]) as engine:
        summary, records = _run(out, study, engine, text=True, on_result=kill_a_busy_worker)
    assert killed, "no worker was busy to be killed"
    assert not summary.problems, [(r.kind, r.reason) for r in summary.problems]
    assert summary.line() == "10 files: 10 written, 0 skipped as not DICOM, 0 failed"
    assert sorted(r.input_id for r in records) == sorted(i.input_id for i in _inputs(study))
    assert {r.status for r in records} == {"written"}
    assert len(_tree(out)) == 20 == len({p for r in records for p in r.outputs})
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))
    client.wait_for_workers(2, timeout=60)  # the cluster starts a new one; later tests use it


def test_an_interrupted_run_resumes_on_dask_to_the_same_bytes(
    client: Any, study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    seen: list[str] = []

    def stop_after_three(record: FileRecord) -> None:
        seen.append(record.input_id)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with cluster.engine(client, out, [study]) as engine:
        first, records = _run(out, study, engine, on_result=stop_after_three)
    assert first.interrupted and first.exit_code == ExitCode.INTERRUPTED
    assert sorted(r.input_id for r in records) == sorted(seen)
    address = cluster.Scheduler(address=client.scheduler.address)  # as --scheduler tcp://
    with cluster.connect(address, out, [study]) as engine:
        second, records = _run(out, study, engine)
    assert second.line() == "10 files: 7 written, 3 done before, 0 skipped as not DICOM, 0 failed"
    assert len(records) == 10
    _run(tmp_path / "whole", study, None)
    assert _tree(out) == _tree(tmp_path / "whole")


def test_a_scheduler_without_workers_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import distributed

    monkeypatch.setattr(cluster, "WORKER_TIMEOUT", 0.5)
    empty = distributed.LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    with (
        empty,
        pytest.raises(UsageError) as caught,
        cluster.start(cluster.Scheduler(address=empty.scheduler_address)),
    ):
        pass
    assert str(caught.value).startswith("no Dask worker joined the scheduler at tcp://")


def test_a_file_that_kills_every_worker_fails_as_crashed(tmp_path: Path) -> None:
    import distributed

    class Ended:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def result(self) -> FileRecord:
            raise self.error

    item, seen = batch.Input(tmp_path / "IM1", "IM1", "id-1"), Seen("sha256:1", 1, 1)
    other = (batch.Input(tmp_path / "IM2", "IM2", "id-2"), Seen("sha256:2", 1, 1))
    killed = Ended(distributed.KilledWorker("task", None, 3))
    assert cluster._outcome(distributed, killed, [(item, seen), other]) is None  # type: ignore[arg-type]
    (record,) = cluster._outcome(distributed, killed, [(item, seen)]) or []  # type: ignore[arg-type]
    assert (record.status, record.kind, record.exit_code) == ("failed", "crashed", 4)
    assert record.reason.startswith("decoder crashed") and "no output written" in record.reason
    dropped = Ended(distributed.client.FutureCancelledError("task", "scheduler-lost"))
    records = cluster._outcome(distributed, dropped, [(item, seen), other]) or []  # type: ignore[arg-type]
    assert [(r.status, r.kind, r.input_id) for r in records] == [
        ("failed", "internal", "id-1"),
        ("failed", "internal", "id-2"),
    ]


class Panic(BaseException):
    """A native codec's panic: no Exception, and it will not pickle."""

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("cannot pickle a panic")


def test_what_escapes_the_pipeline_on_a_worker_is_a_record(
    tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def panic(*args: object) -> FileRecord:
        raise Panic("index out of bounds")

    monkeypatch.setattr(batch, "_processed", panic)
    monkeypatch.setitem(clusterwork._SETTINGS, "run", _settings(tmp_path))
    item = _inputs(study)[0]
    record = clusterwork.process_file(item, Seen.of(item.path), "run")
    assert (record.status, record.kind, record.input_id) == ("failed", "crashed", item.input_id)
    assert "Panic" in record.reason


def test_a_worker_that_cannot_see_the_files_stops_the_run_before_the_first(
    client: Any, study: Path, tmp_path: Path
) -> None:
    nowhere = tmp_path / "not-shared" / "probe"
    with pytest.raises(UsageError) as caught:
        cluster.check_workers(client, nowhere, [study])
    message = str(caught.value)
    assert message.startswith("Dask worker tcp://127.0.0.1:")
    assert "cannot see the output folder" in message
    assert "filesystem every worker sees" in message and "\n" not in message
    probe = tmp_path / "probe"
    probe.write_bytes(b"deid\n")
    unseen = clusterwork.check_worker(str(probe), [str(study), str(tmp_path / "gone")], __version__)
    assert unseen.startswith("cannot read input 2 of the 2 given") and "gone" not in unseen
    older = clusterwork.check_worker(str(probe), [str(study)], "0.0.1")
    assert older.startswith(f"runs deid {__version__}, not 0.0.1")
    assert clusterwork.check_worker(str(probe), [str(study)], __version__) == ""


def test_a_worker_that_failed_the_check_when_it_joined_fails_its_files(
    tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(clusterwork._SETTINGS, "run", _settings(tmp_path / "out"))
    monkeypatch.setitem(clusterwork._PROBLEMS, "run", "cannot see the output folder")
    item = _inputs(study)[0]
    record = clusterwork.process_file(item, Seen.of(item.path), "run")
    assert (record.status, record.kind, record.exit_code) == ("failed", "usage", 2)
    assert record.reason == "this Dask worker cannot see the output folder"
    assert not (tmp_path / "out").exists()


def test_the_readme_says_what_the_error_says_to_install() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Many machines: Dask") :]
    assert cluster.NEEDS_DASK.split(": ", 1)[1] in section
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert extras["optional-dependencies"]["dask"] == ["dask[distributed]>=2024.8"]
    assert "dask[distributed]>=2024.8" in extras["optional-dependencies"]["test"]
    for fact in ("--scheduler local:N", "tcp://", "--key-file KEYFILE", "dask ssh", "SLURMCluster"):
        assert fact in section


runner = CliRunner()


def _cli(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output  # stdout and stderr, as a terminal shows them


def test_the_command_line_on_a_local_cluster_looks_like_a_local_run(
    study: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    common = ("--key", KEY, "--format", "dicom,png", "--no-ocr")
    code, text = _cli(
        "anonymize", study, "--out", tmp_path / "dask", "--scheduler", "local:2", *common
    )
    assert code == ExitCode.OK, text
    local_code, local_text = _cli(
        "anonymize", study, "--out", tmp_path / "local", "-j", "2", *common
    )
    assert local_code == code
    assert text.splitlines()[-1] == local_text.splitlines()[-1]
    assert text.splitlines()[-1] == "10 files: 10 written, 0 skipped as not DICOM, 0 failed"
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")
    printed = text + "".join(capfd.readouterr())
    for word in ("distributed", "tcp://", "process_file", "DOE", "Traceback", "Warning"):
        assert word not in printed


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("local:0", "local:N needs N"),
        ("local:x", "local:N needs N"),
        ("foo", "give the address of a Dask scheduler"),
        ("tcp://127.0.0.1", "give the address of a Dask scheduler"),
    ],
)
def test_a_bad_scheduler_is_a_usage_error(
    study: Path, tmp_path: Path, given: str, says: str
) -> None:
    code, text = _cli("anonymize", study, "--out", tmp_path / "out", "--scheduler", given)
    assert code == ExitCode.USAGE
    assert text.startswith(f"error: --scheduler {given!r}: ") and says in text
    assert text.count("\n") == 1 and not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_a_usage_error(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)
    code, text = _cli(
        "anonymize", study, "--out", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert code == ExitCode.USAGE, text
    assert text.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 ")
    assert text.count("\n") == 1


def test_without_dask_the_scheduler_option_says_what_to_install(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, text = _cli("anonymize", study, "--out", tmp_path / "out", "--scheduler", "local:2")
    assert (code, text) == (ExitCode.USAGE, f"error: {cluster.NEEDS_DASK}\n")
    assert not (tmp_path / "out").exists()
