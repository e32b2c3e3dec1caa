"""The command line, run in-process: exit codes, outputs, and what must never appear."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import BURNED_NAME, PHI, burned_in_pixels, make_dataset, write_series
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import FileDataset
from typer.testing import CliRunner

from deid import ocr, output, pixels
from deid.cli import app
from deid.errors import ExitCode
from deid.manifest import MANIFEST_NAME, Manifest
from deid.pixels import frames as pixel_frames

runner = CliRunner()
PHI_STRINGS = ("DOE", "JOHN", PHI["patient_id"], PHI["accession"], PHI["institution"])


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr or "")


def assert_no_phi(text: str) -> None:
    for value in PHI_STRINGS:
        assert value not in text


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def outputs_in(folder: Path) -> list[Path]:
    """The files a run wrote, less its manifest."""
    return [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]


def normalise(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def test_one_xray_for_a_chatbot(burned_in_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "for-chatbot"
    code, text = run("anonymize", burned_in_file, "--out", out, "--context", "--jobs", "1")
    assert code == ExitCode.OK, text
    assert_no_phi(text)
    files = sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME)
    assert len(files) == 2 and files[0].endswith(".png") and files[1].endswith(".txt")
    assert all("DOE" not in name and "JOHN" not in name for name in files)
    png = Image.open(out / files[0])
    assert not png.info and png.mode == "L"
    image = np.asarray(png)
    words = normalise(" ".join(w.text for w in ocr.read_words(image, scale=2.0)))
    assert normalise(BURNED_NAME) not in words and "MRN" not in words
    assert "4471923" not in words
    ds = dcmread(burned_in_file)
    shown = pixels.render(ds, pixels.decode(ds, str(burned_in_file))[0])
    marker = np.s_[240:300, 460:512]
    assert np.array_equal(image[marker], shown[marker]), "the L marker must stay"
    ink = ds.pixel_array == 4095
    ink[200:, :] = False  # the name and MRN lines, not the marker
    assert ink.sum() > 500 and image[ink].max() == 0
    note = (out / files[1]).read_text()
    assert "Modality: CR" in note and "View: PA" in note and "Age band: 70-79" in note
    assert_no_phi(note)


def test_dicom_output_is_clean_and_keeps_geometry(burned_in_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = burned_in_file.read_bytes()
    code, text = run("anonymize", burned_in_file, "--out", out, "--format", "dicom", "--jobs", "1")
    assert code == ExitCode.OK, text
    assert burned_in_file.read_bytes() == before
    (written,) = list(out.glob("*.dcm"))
    clean, original = dcmread(written), dcmread(burned_in_file)
    data = written.read_bytes()
    for value in (PHI["name"], PHI["patient_id"], PHI["institution"], PHI["sop_uid"]):
        assert value.encode() not in data
    assert clean.PixelSpacing == original.PixelSpacing
    assert (clean.Rows, clean.Columns) == (original.Rows, original.Columns)
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert clean.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    ink = original.pixel_array == 4095
    ink[200:, :] = False
    filled = clean.pixel_array[ink]
    assert ink.sum() > 500 and filled.min() == filled.max()
    assert pixels.render(clean, pixels.decode(clean, "out")[0])[ink].max() == 0
    body = np.s_[200:300, 200:300]
    assert np.array_equal(clean.pixel_array[body], original.pixel_array[body])
    assert "113101" in [i.CodeValue for i in clean.DeidentificationMethodCodeSequence]


def test_every_frame_is_redacted(write_dicom: Callable[..., Path], tmp_path: Path) -> None:
    frames = burned_in_pixels([("SMITH ANNA", (20, 16), 30)], size=256, frames=4)
    path = write_dicom(make_dataset(frames, bits_stored=12, modality="XA"), "cine.dcm")
    out = tmp_path / "out"
    code, text = run(
        "anonymize", path, "--out", out, "--format", "dicom,png", "--frames", "all", "-j", "1"
    )
    assert code == ExitCode.OK, text
    assert len(list(out.glob("*.png"))) == 4
    written = dcmread(next(out.glob("*.dcm")))
    clean = written.pixel_array
    assert clean.shape == (4, 256, 256)
    ink = frames == 4095
    assert ink.sum() > 400 and clean[ink].min() == clean[ink].max()
    decoded = pixels.decode(written, "out")
    for index in range(4):
        assert pixels.render(written, decoded[index])[ink[index]].max() == 0


def make_study_folder(root: Path, ct_dataset: FileDataset) -> dict[str, Path]:
    """A patient-CD-like tree: DICOM without extension, junk, a PDF and a truncated file."""
    (root / "PATIENT_DOE" / "SERIES1").mkdir(parents=True)
    paths: dict[str, Path] = {}
    for i in range(3):
        ds = make_dataset(extra={"InstanceNumber": i + 1})
        ds.SOPInstanceUID = f"{PHI['sop_uid']}.{i}"
        paths[f"ct{i}"] = root / "PATIENT_DOE" / "SERIES1" / f"IM{i:04d}"
        ds.save_as(paths[f"ct{i}"], enforce_file_format=True)
    paths["nested"] = root / "PATIENT_DOE" / "DOE_JOHN.dcm"
    ct_dataset.save_as(paths["nested"], enforce_file_format=True)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 64)
    (root / "AUTORUN.INF").write_text("[autorun]\n")
    pdf = make_dataset(sop_class="1.2.840.10008.5.1.4.1.1.104.1")
    paths["pdf"] = root / "REPORT.dcm"
    pdf.save_as(paths["pdf"], enforce_file_format=True)
    paths["truncated"] = root / "PATIENT_DOE" / "BROKEN"
    data = paths["ct0"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) - 2000])
    return paths


def test_study_folder(ct_dataset: FileDataset, tmp_path: Path) -> None:
    source = tmp_path / "study"
    make_study_folder(source, ct_dataset)
    before = tree_digest(source)
    out = tmp_path / "clean"
    code, text = run(
        "anonymize", source, "--out", out, "--format", "dicom,png", "--key", "k", "-j", "2"
    )
    assert code == ExitCode.MIXED_FAILURES, text
    assert "8 files: 4 written, 2 skipped as not DICOM, 2 failed" in text
    assert "REPORT.dcm: refused" in text and "BROKEN: " in text and "truncated" in text
    names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    assert_no_phi(re.sub("|".join(re.escape(n) for n in names), "", text))
    assert str(source) not in text
    assert tree_digest(source) == before
    dicoms = sorted(out.rglob("*.dcm"))
    assert len(dicoms) == 4 and len(list(out.rglob("*.png"))) == 4
    assert {len(p.relative_to(out).parts) for p in dicoms} == {4}
    patients = {p.relative_to(out).parts[0] for p in dicoms}
    assert len(patients) == 1 and "DOE" not in next(iter(patients))
    assert not [p for p in out.rglob("*") if p.name.startswith(".deid-partial")]
    again = tmp_path / "again"
    code, _ = run("anonymize", source, "--out", again, "--format", "dicom,png", "--key", "k")
    assert sorted(p.relative_to(again) for p in again.rglob("*.dcm")) == [
        p.relative_to(out) for p in dicoms
    ]


def test_output_inside_input_is_never_read_back(ct_file: Path, tmp_path: Path) -> None:
    source = ct_file.parent
    out = source / "deid-out"
    code, text = run("anonymize", source, "--out", out, "--format", "dicom", "--key", "k")
    assert code == ExitCode.OK, text
    code, text = run("anonymize", source, "--out", out, "--format", "dicom", "--key", "k")
    assert code == ExitCode.OK, text
    assert "1 file: 0 written, 1 done before" in text
    code, text = run(
        "anonymize", source, "--out", out, "--format", "dicom", "--key", "k", "--overwrite"
    )
    assert code == ExitCode.OK and "1 file: 1 written" in text


@pytest.mark.parametrize(
    ("content", "code", "reason"),
    [
        (b"just some text", ExitCode.NOT_DICOM, "not a DICOM file"),
        (b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0", ExitCode.UNREADABLE, "truncated"),
    ],
)
def test_single_bad_file_exit_codes(tmp_path: Path, content: bytes, code: int, reason: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    out = tmp_path / "out"
    exit_code, text = run("anonymize", path, "--out", out)
    assert exit_code == code, text
    assert reason in text and "input: " in text and str(tmp_path) not in text
    assert not outputs_in(out)


def test_missing_codec_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    source = Path(str(get_testdata_file("JPEG2000.dcm")))
    monkeypatch.setattr(pixel_frames, "_decoder_available", lambda uid: False)
    code, text = run("anonymize", source, "--out", tmp_path / "out", "-j", "1")
    assert code == ExitCode.MISSING_CODEC, text
    assert "JPEG 2000" in text and "pip install" in text


def test_unknown_profile_is_a_usage_error(ct_file: Path, tmp_path: Path) -> None:
    code, text = run("anonymize", ct_file, "--out", tmp_path / "o", "--profile", "nope")
    assert code == ExitCode.USAGE
    assert "safe-harbor" in text


def test_bad_format_is_a_usage_error(ct_file: Path, tmp_path: Path) -> None:
    code, text = run("anonymize", ct_file, "--out", tmp_path / "o", "--format", "jpg")
    assert code == ExitCode.USAGE and "--format" in text


def test_inspect_writes_nothing_and_shows_no_values(burned_in_file: Path, tmp_path: Path) -> None:
    before = tree_digest(tmp_path)
    code, text = run("inspect", burned_in_file)
    assert code == ExitCode.OK, text
    assert tree_digest(tmp_path) == before
    assert "PatientName" in text and "pseudonymize" in text and "safe-harbor.toml:" in text
    assert "redact" in text
    assert_no_phi(re.sub(re.escape(str(burned_in_file)) + r"\S*", "", text))
    preview = tmp_path / "boxes.png"
    code, text = run("inspect", burned_in_file, "--preview", preview)
    assert code == ExitCode.OK and preview.is_file()
    assert np.asarray(Image.open(preview)).shape[2] == 3


def test_profiles_list_and_show() -> None:
    code, text = run("profiles", "list")
    assert code == 0 and "safe-harbor" in text
    code, text = run("profiles", "show", "safe-harbor")
    assert code == 0 and "PatientName" in text and "keyed HMAC-SHA256" in text
    code, text = run("profiles", "show", "nope")
    assert code == ExitCode.USAGE


def test_profiles_validate_exit_codes(tmp_path: Path) -> None:
    code, text = run("profiles", "validate", Path(__file__).parent.parent / "profiles")
    assert code == ExitCode.OK, text
    bad = tmp_path / "team.toml"
    bad.write_text('name = "team"\nextends = "safe-harbor"\n[tags.rules]\nPatientNmae = "keep"\n')
    code, text = run("profiles", "validate", bad)
    assert code == 1
    assert f"{bad}:4:" in text and 'did you mean "PatientName"' in text
    code, text = run("profiles", "validate", tmp_path / "missing.toml")
    assert code == ExitCode.USAGE


def test_research_profile_is_not_safe_harbor() -> None:
    research = Path(__file__).parent.parent / "profiles" / "research-longitudinal.toml"
    code, text = run("profiles", "validate", research, "--safe-harbor")
    assert code == 1 and "(C) Dates and ages" in text


def test_verify_finds_a_name_in_a_png_chunk_and_never_prints_it(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", PHI["name"])
    leaky = tmp_path / "out" / "IMAGE.png"
    leaky.parent.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(leaky, pnginfo=info)
    code, text = run("verify", leaky.parent)
    assert code == 1, text
    assert "IMAGE.png" in text and "tEXt" in text
    assert PHI["name"] not in text and "DOE" not in text
    leaky.unlink()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(leaky)
    code, text = run("verify", leaky.parent)
    assert code == 0, text


def test_profiles_test_catches_a_weakened_profile(ct_file: Path, tmp_path: Path) -> None:
    weak = tmp_path / "weak.toml"
    weak.write_text(
        'name = "weak"\nextends = "safe-harbor"\n[tags.rules]\nInstitutionName = "keep"\n'
    )
    code, text = run("profiles", "test", weak, "--samples", ct_file.parent, "-j", "1")
    assert code == 1 and "institution" in text
    assert PHI["institution"] not in text
    code, text = run("profiles", "test", "safe-harbor", "--samples", ct_file.parent, "-j", "1")
    assert code == 0, text


def test_a_weakened_safe_harbor_profile_stops_before_the_first_file(
    ct_file: Path, tmp_path: Path
) -> None:
    weak = tmp_path / "weak.toml"
    weak.write_text('extends = "safe-harbor"\n[tags.rules]\nInstitutionName = "keep"\n')
    out = tmp_path / "out"
    code, text = run(
        "anonymize", ct_file, "--out", out, "--format", "dicom", "--profile", weak, "-j", "1"
    )
    assert code == ExitCode.USAGE, text
    assert "weak.toml:3" in text and "InstitutionName" in text
    assert not out.exists()


def test_leak_check_withholds_the_output_and_names_the_attribute(
    ct_file: Path, tmp_path: Path
) -> None:
    copied = tmp_path / "copied.toml"
    copied.write_text(
        'extends = "safe-harbor"\n[safe_harbor]\nclaim = false\n[tags.rules]\n'
        f'StudyDescription = {{ replace = "{PHI["institution"]}" }}\n'
    )
    out = tmp_path / "out"
    code, text = run(
        "anonymize", ct_file, "--out", out, "--format", "dicom", "--profile", copied, "-j", "1"
    )
    assert code == ExitCode.LEAK_FOUND, text
    assert "institution in StudyDescription" in text and PHI["institution"] not in text
    assert not out.exists() or not outputs_in(out)


def test_values_a_non_safe_harbor_profile_keeps_are_not_leaks(
    ct_file: Path, tmp_path: Path
) -> None:
    dates = tmp_path / "basic-dates.toml"
    dates.write_text(
        'extends = "dicom-basic"\n[annex_e]\noptions = ["retain-longitudinal-full-dates"]\n'
    )
    out = tmp_path / "out"
    code, text = run(
        "anonymize", ct_file, "--out", out, "--format", "dicom", "--profile", dates, "-j", "1"
    )
    assert code == ExitCode.OK, text
    written = dcmread(next(out.glob("*.dcm")))
    assert written.StudyDate == PHI["study_date"]
    assert "113106" in [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    code, text = run("profiles", "test", dates, "--samples", ct_file.parent, "-j", "1")
    assert code == 0 and "kept on purpose" in text


def test_rerun_resumes_and_reports_nothing_as_failed(series_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, text = run("anonymize", series_folder, "--out", out, "--format", "dicom", "-j", "1")
    assert code == ExitCode.OK, text
    before = tree_digest(out)
    code, text = run("anonymize", series_folder, "--out", out, "--format", "dicom", "-j", "1")
    assert code == ExitCode.OK, text
    assert "6 files: 0 written, 6 done before" in text and "FAILED" not in text
    assert {k: v for k, v in tree_digest(out).items() if "manifest" not in k} == {
        k: v for k, v in before.items() if "manifest" not in k
    }


def test_another_key_into_the_same_folder_is_refused(series_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("anonymize", series_folder, "--out", out, "--format", "dicom", "--key", "a", "-j", "1")
    before = tree_digest(out)
    code, text = run("anonymize", series_folder, "--out", out, "--key", "b", "-j", "1")
    assert code == ExitCode.USAGE
    assert "new --out" in text and len(set(text.strip().splitlines())) == 1
    assert tree_digest(out) == before


def test_out_equal_to_the_input_folder_is_refused(series_folder: Path) -> None:
    before = tree_digest(series_folder)
    code, text = run("anonymize", series_folder, "--out", series_folder)
    assert code == ExitCode.USAGE and "input folder" in text
    assert tree_digest(series_folder) == before


def test_json_prints_records_without_values_or_paths(series_folder: Path, tmp_path: Path) -> None:
    code, text = run(
        "anonymize", series_folder, "--out", tmp_path / "o", "--json", "-q", "--no-ocr", "-j", "1"
    )
    assert code == ExitCode.OK, text
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 6 and {r["status"] for r in records} == {"written"}
    assert all(r["digest"].startswith("sha256:") and r["outputs"] for r in records)
    assert_no_phi(text)
    assert "SERIES1" not in text


def test_quiet_prints_errors_only(series_folder: Path, tmp_path: Path) -> None:
    (series_folder / "BROKEN").write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0")
    code, text = run("anonymize", series_folder, "--out", tmp_path / "o", "-q", "--no-ocr")
    assert code == ExitCode.UNREADABLE
    lines = text.strip().splitlines()
    assert lines[0].startswith("FAILED BROKEN: ") and "files/s" not in text


def _run_in_background(tmp_path: Path, pngs: int) -> tuple[Path, Path, subprocess.Popen[str]]:
    """`deid anonymize` of 40 slices in its own process, once `pngs` outputs are written."""
    source = tmp_path / "in"
    write_series(source / "DOE_JOHN", 40, size=512)
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from deid.cli import main; main()", "anonymize"]
    command += [str(source), "--out", str(out), "--format", "dicom,png", "--key", "k", "-j", "2"]
    # Ctrl-C as a terminal gives it, even where this suite runs in the background
    # (which starts children with SIGINT ignored, and Python keeps it so).
    child = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.png"))) < pngs and time.monotonic() < deadline:
        time.sleep(0.05)
    return source, out, child


def test_ctrl_c_stops_soon_and_the_rerun_resumes(tmp_path: Path) -> None:
    source, out, child = _run_in_background(tmp_path, pngs=4)
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = child.communicate(timeout=30)
    stopped = time.monotonic() - sent
    assert child.returncode == ExitCode.INTERRUPTED, stderr
    assert stopped < 2.5, stopped
    match = re.search(r"(\d+) of 40 done; run again to resume", stderr)
    assert match and int(match.group(1)) > 0, stderr
    assert "Traceback" not in stderr and "DOE" not in stderr
    assert not list(out.rglob(".deid-partial*"))
    pngs = len(list(out.rglob("*.png")))
    assert 0 < pngs < 40
    code, text = run("anonymize", source, "--out", out, "--format", "dicom,png", "--key", "k")
    assert code == ExitCode.OK, text
    counts = re.search(r"40 files: (\d+) written, (\d+) done before", text)
    assert counts and int(counts.group(2)) == int(match.group(1)), text
    assert len(list(out.rglob("*.png"))) == len(list(out.rglob("*.dcm"))) == 40


def _manifest_rows(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / MANIFEST_NAME) as db:
        return db.execute("SELECT input_id, status FROM files").fetchall()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_run_killed_at_a_random_point_resumes_with_every_input_once(
    tmp_path: Path, seed: int
) -> None:
    """SIGKILL at a seeded moment, then a rerun: each input ends with one whole DICOM and
    one whole PNG and one manifest row, and nothing the first run finished is done again."""
    rng = random.Random(seed)
    source, out, child = _run_in_background(tmp_path, pngs=rng.randrange(0, 36))
    time.sleep(rng.uniform(0.0, 0.3))
    child.kill()
    child.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while _processes_writing_to(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    recorded = len(_manifest_rows(out)) if (out / MANIFEST_NAME).exists() else 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in {".dcm", ".png"}}

    code, text = run("anonymize", source, "--out", out, "--format", "dicom,png", "--key", "k")
    assert code == ExitCode.OK, text
    counts = re.search(r"40 files: (\d+) written(?:, (\d+) done before)?", text)
    assert counts, text
    assert int(counts.group(2) or 0) == recorded, text
    assert int(counts.group(1)) + recorded == 40, text

    dicoms, pngs = sorted(out.rglob("*.dcm")), sorted(out.rglob("*.png"))
    assert len(dicoms) == len(pngs) == 40
    assert {p.with_suffix("") for p in dicoms} == {p.with_suffix("") for p in pngs}
    assert not list(out.rglob(".deid-partial*"))
    for path in dicoms:
        assert dcmread(path).pixel_array.shape == (512, 512)
    for path in pngs:
        with Image.open(path) as image:
            image.load()
    rows = _manifest_rows(out)
    assert len(rows) == len({input_id for input_id, _ in rows}) == 40
    assert {status for _, status in rows} == {"written"}
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_exit_code_table_matches_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    rows = re.findall(r"^\| (\d+) \| ", readme, flags=re.MULTILINE)
    assert sorted(int(r) for r in rows) == sorted(int(c) for c in ExitCode)


def test_inspect_of_a_folder_is_a_one_line_error(tmp_path: Path) -> None:
    code, text = run("inspect", tmp_path)
    assert code == ExitCode.NOT_DICOM and "not a regular file" in text
    assert "Traceback" not in text


def _processes_writing_to(out: Path) -> list[int]:
    """Live processes whose command line names `out` (the run and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if str(out).encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_run_leaves_no_process_and_writes_nothing_after(tmp_path: Path, how: str) -> None:
    _, out, child = _run_in_background(tmp_path, pngs=2)
    child.send_signal(getattr(signal, how))
    _, stderr = child.communicate(timeout=30)
    if how == "SIGTERM":
        assert child.returncode == ExitCode.INTERRUPTED, stderr
        assert "run again to resume" in stderr
    deadline = time.monotonic() + 5
    while _processes_writing_to(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_writing_to(out) == []
    written = sorted(out.rglob("*"))
    time.sleep(1.0)
    assert sorted(out.rglob("*")) == written
    assert not [p for p in written if p.name.startswith(".deid-partial")]


def test_links_out_of_the_input_folder_are_not_read(series_folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_series(elsewhere, 1)
    (series_folder / "LINK_OUT").symlink_to(elsewhere / "IM0000")
    (series_folder / "LINK_IN").symlink_to(series_folder / "DOE_JOHN" / "SERIES1" / "IM0000")
    (series_folder / "LOOP").symlink_to(series_folder, target_is_directory=True)
    code, text = run("anonymize", series_folder, "--out", tmp_path / "o", "--no-ocr", "-v")
    assert code == ExitCode.OK, text
    assert "not read: 1 link(s) leading out of the input folder (LINK_OUT)" in text
    assert "7 files: 6 written, 1 duplicates" in text


def test_redact_paths_names_inputs_by_number_only(series_folder: Path, tmp_path: Path) -> None:
    (series_folder / "DOE_JOHN" / "BROKEN").write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0")
    code, text = run(
        "anonymize", series_folder, "--out", tmp_path / "o", "--no-ocr", "--redact-paths"
    )
    assert code == ExitCode.UNREADABLE, text
    assert re.search(r"FAILED input #\d+: truncated", text)
    assert "DOE" not in text and "BROKEN" not in text and "SERIES1" not in text


@pytest.mark.parametrize(
    ("option", "code"),
    [("max_frame_pixels=100", ExitCode.TOO_LARGE), ("max_frames=0x10", ExitCode.USAGE)],
)
def test_limits_are_set_on_the_command_line(
    series_folder: Path, tmp_path: Path, option: str, code: int
) -> None:
    out = tmp_path / "o"
    result, text = run("anonymize", series_folder, "--out", out, "--no-ocr", "--limit", option)
    assert result == code, text
    assert not out.exists() or not outputs_in(out)


def test_a_full_disk_during_output_writes_stops_the_run_with_its_own_code(
    series_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: object) -> list[Path]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.Transaction, "commit", full)
    out = tmp_path / "out"
    code, text = run("anonymize", series_folder, "--out", out, "--no-ocr", "--jobs", "1")
    assert code == ExitCode.DISK_FULL, text
    assert (
        "stopped: the disk holding the output folder is full; 0 of 6 done "
        "(free some space, then run again to resume)"
    ) in text
    assert "Traceback" not in text and "unexpected" not in text
    assert not outputs_in(out)


def test_a_rerun_on_a_full_disk_stops_at_the_manifest_with_its_own_code(
    series_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    code, text = run("anonymize", series_folder, "--out", out, "--no-ocr", "-j", "1")
    assert code == ExitCode.OK, text
    write_series(series_folder / "LATER", 7)
    before = tree_digest(out)
    begin = Manifest.begin

    def begin_on_a_full_disk(self: Manifest, inputs: int) -> None:
        """The real `begin`, once SQLite may grow the manifest no more and its sessions
        table has no room left: SQLite fails the write with SQLITE_FULL."""
        db = self._db
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        with contextlib.suppress(sqlite3.OperationalError):
            while True:
                db.execute("INSERT INTO sessions (started, version, inputs) VALUES (0, '', 0)")
        begin(self, inputs)

    monkeypatch.setattr(Manifest, "begin", begin_on_a_full_disk)
    code, text = run("anonymize", series_folder, "--out", out, "--no-ocr", "-j", "1")
    assert code == ExitCode.DISK_FULL, text
    assert f"{MANIFEST_NAME}: the disk holding the output folder is full" in text
    assert "6 of 13 done (free some space, then run again to resume)" in text
    assert "Traceback" not in text and "OperationalError" not in text
    assert {k: v for k, v in tree_digest(out).items() if "manifest" not in k} == {
        k: v for k, v in before.items() if "manifest" not in k
    }


# A name that would end its line and print a summary of its own, one that would clear
# the terminal and colour what follows, one rich would take for markup, and one it
# would take for an emoji code.
FORGING = "IM\n6 files: 6 written, 0 skipped as not DICOM, 0 failed"
ANSI = "\x1b[2J\x1b[1;31mALL CLEAN\x1b[0m"
MARKUP = "[bold red]IM[blink]\r\x07"
EMOJI = "IM:warning:"


def assert_escaped(text: str) -> None:
    """No control character but line ends, and no line a name could have forged."""
    raw = sorted({hex(ord(c)) for c in text if not c.isprintable() and c != "\n"})
    assert not raw, raw
    assert not [line for line in text.splitlines() if line.startswith("6 files")]


def test_names_with_control_characters_are_printed_escaped(
    series_folder: Path, tmp_path: Path
) -> None:
    truncated = b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0"
    (series_folder / FORGING).write_bytes(truncated)
    (series_folder / ANSI).write_text("not an image")
    (series_folder / MARKUP).write_bytes(truncated)
    (series_folder / EMOJI).write_text("not an image")
    code, text = run("anonymize", series_folder, "--out", tmp_path / "o", "--no-ocr", "-v")
    assert code == ExitCode.UNREADABLE, text
    assert_escaped(text)
    assert "FAILED IM\\n6 files: 6 written, 0 skipped as not DICOM, 0 failed: truncated" in text
    assert "skipped \\x1b[2J\\x1b[1;31mALL CLEAN\\x1b[0m: not a DICOM file" in text
    assert "FAILED [bold red]IM[blink]\\r\\x07: truncated" in text
    assert "skipped IM:warning:: not a DICOM file" in text
    assert re.search(r"^10 files: 6 written, 2 skipped as not DICOM, 2 failed$", text, re.M)


def test_inspect_prints_a_name_with_control_characters_escaped(
    ct_file: Path, tmp_path: Path
) -> None:
    for name in (FORGING, ANSI, MARKUP):
        named = tmp_path / name
        named.write_bytes(ct_file.read_bytes())
        code, text = run("inspect", named, "--no-ocr")
        assert code == ExitCode.OK, text
        assert_escaped(text)
        first = text.splitlines()[0]
        assert first.startswith(str(tmp_path / repr(name)[1:-1]) + ": ")
        assert "BurnedInAnnotation" in first
        named.write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0")
        code, text = run("inspect", named)
        assert code == ExitCode.UNREADABLE, text
        assert_escaped(text)
        assert len(set(text.strip().splitlines())) == 1 and "truncated" in text


def test_verify_prints_a_name_with_control_characters_escaped(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "note")
    folder = tmp_path / "out"
    folder.mkdir()
    for name in (FORGING, ANSI, MARKUP):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / f"{name}.png", pnginfo=info)
    code, text = run("verify", folder)
    assert code == ExitCode.MIXED_FAILURES, text
    assert_escaped(text)
    for name in (FORGING, ANSI, MARKUP):
        assert f"{folder}/{repr(name)[1:-1]}.png: PNG tEXt chunk" in text
