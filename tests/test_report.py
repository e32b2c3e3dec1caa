"""`deid report`: the HTML page of a run, read as HTML and as a browser shows it."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Parsed, chromium, dumped
from PIL import Image
from pydicom.dataset import FileDataset
from typer.testing import CliRunner

from deid import report
from deid.cli import app
from deid.errors import ExitCode, UsageError
from deid.manifest import Manifest, RunInfo
from deid.output import png_bytes
from deid.record import ActionRecord, BoxRecord, FileRecord

PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>"
# Payloads that would change what the browser shows if they ever ran.
TITLE_PAYLOAD = "<script>document.title='PWNED'</script>"
DOM_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
GREY = 128
INFO = RunInfo("safe-harbor", "sha256:" + "ab" * 32, "k-1f2e3d4c", "given")
# The CT output: a 512x512 PNG with one covered box, in frame pixels.
CT_BOX = BoxRecord(0, 100, 50, 300, 90, "name")
# The DICOM-only output: 256x256, box on every frame.
DICOM_BOX = BoxRecord(None, 20, 30, 120, 60, "mrn")
# The downsized output: a 400x800 frame whose PNG was capped at 200 px.
SMALL_BOX = BoxRecord(0, 400, 200, 600, 300, "date")
SECONDS = {
    "ct": {"read": 0.01, "pixels": 0.5},
    "dcm": {"read": 0.03, "pixels": 0.25},
    "small": {"read": 0.02, "pixels": 1.0},
}


def covered(rows: int, cols: int, boxes: list[BoxRecord]) -> np.ndarray:
    """A grey picture with each box black: what a redacted output looks like."""
    image = np.full((rows, cols), GREY, dtype=np.uint8)
    for b in boxes:
        image[b.top : b.bottom, b.left : b.right] = 0
    return image


def write_run(
    out: Path, make_dataset: Callable[..., FileDataset], hostile: bool = True
) -> list[FileRecord]:
    """A run folder with real outputs and a manifest; returns the records as added."""
    out.mkdir(parents=True, exist_ok=True)
    ct_png = out / "P1" / "S1" / "IMct.png"
    ct_png.parent.mkdir(parents=True)
    ct_png.write_bytes(png_bytes(covered(512, 512, [CT_BOX])))

    ds = make_dataset(covered(256, 256, [DICOM_BOX]), phi=False, modality="OT")
    dcm = out / "P1" / "S1" / "IMdcm.dcm"
    ds.save_as(dcm, enforce_file_format=True)

    big = covered(400, 800, [SMALL_BOX])
    small_png = out / "IMsmall.png"
    small_png.write_bytes(png_bytes(big, max_size=200))
    small_dcm = out / "IMsmall.dcm"
    make_dataset(big, phi=False).save_as(small_dcm, enforce_file_format=True)

    reason = PAYLOAD + TITLE_PAYLOAD + DOM_PAYLOAD if hostile else "truncated pixel data"
    actions = [ActionRecord("PatientName", "remove"), ActionRecord("PatientID", "pseudonymize")]
    records = [
        _record(
            "a",
            "written",
            object="CT Image Storage",
            outputs=(str(ct_png),),
            actions=[*actions, ActionRecord(reason, "remove")],
            boxes=[CT_BOX, BoxRecord(5, 1, 1, 2, 2, reason)],  # not on the frame shown
            frames=1,
            seconds=SECONDS["ct"],
        ),
        _record(
            "b",
            "written",
            object="Secondary Capture Image Storage",
            outputs=(str(dcm),),
            actions=actions,
            boxes=[DICOM_BOX],
            frames=1,
            seconds=SECONDS["dcm"],
        ),
        _record(
            "c",
            "written",
            object="CT Image Storage",
            outputs=(str(small_dcm), str(small_png)),
            actions=actions[:1],
            boxes=[SMALL_BOX],
            frames=1,
            seconds=SECONDS["small"],
        ),
        _record(
            "d",
            "failed",
            kind=reason,
            object=reason,
            reason=reason,
            exit_code=ExitCode.UNREADABLE,
        ),
        _record(
            "e",
            "duplicate",
            duplicate_of=_input_id("a"),
        ),
        _record(
            "f",
            "skipped",
            kind="not-dicom",
            reason="not a DICOM file",
        ),
    ]
    with Manifest.open(out, INFO) as manifest:
        for record in records:
            manifest.add(record, out)
    return records


def _input_id(letter: str) -> str:
    return "id:" + letter * 16


def _record(letter: str, status: str, **fields: Any) -> FileRecord:
    """A record of input `letter`, its id and digest made of that letter."""
    return FileRecord(
        path=letter,
        status=status,  # type: ignore[arg-type]
        input_id=_input_id(letter),
        digest="sha256:" + letter * 64,
        **fields,
    )


@pytest.fixture
def run_dir(tmp_path: Path, dataset_factory: Callable[..., FileDataset]) -> Path:
    out = tmp_path / "out"
    write_run(out, dataset_factory)
    return out


def test_hostile_strings_come_out_as_text(run_dir: Path) -> None:
    page = report.build(run_dir)
    parsed = Parsed(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags
    assert tags.count("img") == 3  # the three thumbnails, none from a payload
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
    for payload in (PAYLOAD, TITLE_PAYLOAD, DOM_PAYLOAD):
        assert payload not in page
        assert parsed.words.count(payload) >= 4  # reason, kind, object, action path, box
    assert re.findall(r"<title>(.*?)</title>", page) == ["deid report"]


def test_page_loads_nothing_from_anywhere(run_dir: Path) -> None:
    page = report.build(run_dir)
    parsed = Parsed(page)
    links = [
        (tag, name, value)
        for tag, attrs in parsed.tags
        for name, value in attrs.items()
        if name in ("src", "href", "srcset", "action", "data", "poster")
    ]
    assert links and all(
        tag == "img" and name == "src" and (value or "").startswith("data:image/jpeg;base64,")
        for tag, name, value in links
    )
    assert not {"link", "script", "iframe", "object", "embed", "base"} & {t for t, _ in parsed.tags}
    assert "url(" not in page and "@import" not in page
    csp = [a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]
    assert len(page) < 200_000  # three small thumbnails, not the outputs themselves


def test_totals_facts_and_actions(run_dir: Path) -> None:
    words = Parsed(report.build(run_dir)).words
    assert "6 inputs 3 written 1 skipped 1 failed 1 duplicate" in words
    assert "safe-harbor" in words and INFO.profile_digest in words and "k-1f2e3d4c" in words
    assert "Failures (1)" in words and "Duplicates (1)" in words
    assert "dddddddddddd" in words.split("Failures (1)")[1]  # which input, by its id
    assert "aaaaaaaaaaaa" in words.split("Duplicates (1)")[1]  # the first copy it repeats
    assert "not a DICOM file 1" in words
    # Actions per attribute, counted in files: the last table on the page.
    actions = words.split("Actions per attribute")[-1]
    assert "PatientName remove 3" in actions and "PatientID pseudonymize 2" in actions
    read = [s["read"] for s in SECONDS.values()]
    assert f"read 3 {sum(read):.2f} {statistics.median(read):.3f}" in words
    assert "pixels 3 1.75 0.500" in words
    assert "CT Image Storage 2" in words


def outline_around(image: np.ndarray, left: int, top: int, right: int, bottom: int) -> None:
    """Assert black inside [left, right) x [top, bottom) and a red outline just outside."""
    inside = image[top + 1 : bottom - 1, left + 1 : right - 1]
    assert inside.max() < 40
    red = (image[..., 0] > 180) & (image[..., 1] < 110) & (image[..., 2] < 110)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - (left - 2)) <= 1 and abs(xs.max() - (right + 1)) <= 1
    assert abs(ys.min() - (top - 2)) <= 1 and abs(ys.max() - (bottom + 1)) <= 1
    grey = image[bottom + 6 :, :].astype(int)
    assert abs(np.median(grey) - GREY) < 8


def test_thumbnails_draw_boxes_where_they_were_covered(run_dir: Path) -> None:
    ct, dcm, small = Parsed(report.build(run_dir, size=256)).images()
    # 512 -> 256: the box halves.
    assert ct.shape[:2] == (256, 256)
    outline_around(ct, 50, 25, 150, 45)
    # Rendered from the DICOM output: full size, box where it was.
    assert dcm.shape[:2] == (256, 256)
    rendered = np.asarray(dcm, dtype=int)
    assert rendered[100:, 150:].mean() > 200  # the grey field renders white
    red = (rendered[..., 0] > 180) & (rendered[..., 1] < 110)
    ys, xs = np.nonzero(red)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == pytest.approx((18, 28, 121, 61), abs=1)
    assert rendered[32:58, 22:118].max() < 40
    # The PNG was capped from 800x400 to 200x100: boxes scale by a quarter with it.
    assert small.shape[:2] == (100, 200)
    outline_around(small, 100, 50, 150, 75)


def test_missing_and_outside_outputs_get_a_note(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret.png").write_bytes(png_bytes(covered(8, 8, [])))
    record = FileRecord(
        path="x",
        status="written",
        input_id="id:x",
        outputs=("../secret.png", "gone.png"),
        boxes=[CT_BOX],
    )
    parsed = Parsed(report.page(INFO, [record], out))
    assert "img" not in [tag for tag, _ in parsed.tags]
    assert "outside the output folder" in parsed.words and "the file is missing" in parsed.words


def test_many_outputs_show_the_first_and_say_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    records = []
    for i in range(5):
        path = out / f"IM{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(png_bytes(covered(64, 64, [])))
        records.append(
            FileRecord(path=str(i), status="written", input_id=f"id:{i}", outputs=(str(path),))
        )
    with Manifest.open(out, INFO) as manifest:
        for record in records:
            manifest.add(record, out)
    parsed = Parsed(report.build(out, limit=2))
    assert [tag for tag, _ in parsed.tags].count("img") == 2
    assert "Showing 2 of 5 files and 2 of 5 images" in parsed.words
    assert "5 written" in parsed.words


def test_no_manifest_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="deid-manifest"):
        report.build(tmp_path)


def test_cli_writes_the_page_and_says_where(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"report written: {run_dir / 'report.html'}"
    assert "3 written" in Parsed((run_dir / "report.html").read_text("utf-8")).words

    elsewhere = tmp_path / "pages" / "run.html"
    result = runner.invoke(app, ["report", str(run_dir), "--html", str(elsewhere)])
    assert result.exit_code == 0 and elsewhere.is_file()
    assert not [p for p in elsewhere.parent.iterdir() if p != elsewhere]  # no temp left

    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == ExitCode.USAGE
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "deid-manifest" in lines[0]


# --- In a browser: what a person sees. ---


def test_browser_shows_the_text_and_runs_no_payload(
    browser: str, run_dir: Path, tmp_path: Path
) -> None:
    page = report.build(run_dir)
    seen = dumped(browser, tmp_path / "report.html", page)
    assert "TITLE=deid report" in seen.words
    assert "6 inputs 3 written 1 skipped 1 failed 1 duplicate" in seen.words
    assert "Failures (1)" in seen.words and PAYLOAD in seen.words  # shown literally
    body = next(attrs for tag, attrs in seen.tags if tag == "body")
    assert "data-pwned" not in body
    assert [tag for tag, _ in seen.tags].count("img") == 3
    assert "script" not in [tag for tag, _ in seen.tags]

    # Escaping alone keeps the payloads inert: the same page without its CSP.
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert bare != page
    seen = dumped(browser, tmp_path / "bare.html", bare)
    assert "TITLE=deid report" in seen.words and PAYLOAD in seen.words
    assert "data-pwned" not in next(attrs for tag, attrs in seen.tags if tag == "body")

    # And this browser does run scripts: the checks above could have failed.
    live = bare.replace("</body>", TITLE_PAYLOAD + "</body>")
    assert "TITLE=PWNED" in dumped(browser, tmp_path / "live.html", live).words


def test_screenshot_shows_the_thumbnail_with_its_black_box(
    browser: str, tmp_path: Path, dataset_factory: Callable[..., FileDataset]
) -> None:
    out = tmp_path / "out"
    png = out / "IMct.png"
    out.mkdir()
    png.write_bytes(png_bytes(covered(512, 512, [CT_BOX])))
    record = FileRecord(
        path="a", status="written", input_id="id:a", outputs=(str(png),), boxes=[CT_BOX], frames=1
    )
    with Manifest.open(out, INFO) as manifest:
        manifest.add(record, out)
    page = tmp_path / "shot.html"
    page.write_text(report.build(out), encoding="utf-8")
    shot = tmp_path / "shot.png"
    chromium(browser, page, f"--screenshot={shot}", "--window-size=1000,1400")
    seen = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert seen.std() > 10  # not blank

    # The thumbnail: the only mid-grey area of the page, 256 px square.
    grey = (np.abs(seen - GREY) < 10).all(axis=2)
    ys = np.nonzero(grey.sum(axis=1) > 100)[0]
    xs = np.nonzero(grey.sum(axis=0) > 100)[0]
    top, left = ys.min(), xs.min()
    assert ys.max() - top == pytest.approx(255, abs=2) and xs.max() - left == pytest.approx(
        255, abs=2
    )
    # The red outline sits just outside the box, (50, 25)-(150, 45) in the thumbnail.
    red = (seen[..., 0] > 180) & (seen[..., 1] < 110) & (seen[..., 2] < 110)
    ry, rx = np.nonzero(red)
    assert rx.min() - left == pytest.approx(48, abs=2) and rx.max() - left == pytest.approx(
        151, abs=2
    )
    assert ry.min() - top == pytest.approx(23, abs=2) and ry.max() - top == pytest.approx(46, abs=2)
    assert seen[top + 27 : top + 43, left + 52 : left + 148].max() < 40  # black inside
