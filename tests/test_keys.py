"""Keys that last: `deid keygen`, `--key-file`, named HMAC domains, key ids in records."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from deid import keys
from deid.cli import app
from deid.errors import ExitCode, UsageError
from deid.manifest import MANIFEST_NAME
from deid.pseudonym import DOMAINS, Pseudonymizer, domain_key
from tests.conftest import PHI, write_series

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr or "")


def keygen(path: Path) -> bytes:
    code, text = run("keygen", path)
    assert code == 0, text
    return keys.read_key_file(path)


def headers(folder: Path) -> dict[str, bytes]:
    """Each DICOM output's bytes, by its path under `folder`."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*.dcm"))
        if p.is_file()
    }


def test_keygen_writes_256_bits_for_the_user_alone(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    code, text = run("keygen", path)
    assert code == 0
    key = keys.read_key_file(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.key_id(key) in text and key.hex() not in text
    other = tmp_path / "other.key"
    run("keygen", other)
    assert keys.read_key_file(other) != key


def test_keygen_never_replaces_a_key(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    key = keygen(path)
    code, text = run("keygen", path)
    assert code == ExitCode.USAGE and "never replaced" in text
    assert keys.read_key_file(path) == key


@pytest.mark.parametrize("where", ["series", "below-series", "output"])
def test_keygen_refuses_image_folders(tmp_path: Path, where: str) -> None:
    source = tmp_path / "disc"
    write_series(source / "SERIES1", 2)
    out = tmp_path / "out"
    if where == "output":
        assert run("anonymize", source, "--out", out, "--no-ocr", "-q")[0] == 0
    folder = {
        "series": source / "SERIES1",
        "below-series": source / "SERIES1" / "notes",
        "output": out / "sub",
    }[where]
    folder.mkdir(exist_ok=True)
    code, text = run("keygen", folder / "k.key")
    assert code == ExitCode.USAGE and "keep the key elsewhere" in text
    assert not (folder / "k.key").exists()


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (None, 0o644, "read by others"),
        (None, 0o640, "read by others"),
        ("not a key\n", 0o600, "not a deid key file"),
        ("abcd\n", 0o600, "not a deid key file"),
    ],
)
def test_bad_key_files_stop_the_run_before_any_file(
    tmp_path: Path, content: str | None, mode: int, reason: str
) -> None:
    source = tmp_path / "in"
    write_series(source, 1)
    path = tmp_path / "k.key"
    if content is None:
        keygen(path)
    else:
        path.write_text(content)
    os.chmod(path, mode)
    out = tmp_path / "out"
    code, text = run("anonymize", source, "--out", out, "--key-file", path, "--no-ocr")
    assert code == ExitCode.USAGE and reason in text
    assert str(path) in text and len(set(text.strip().splitlines())) == 1
    assert not out.exists()


def test_a_key_file_inside_the_input_or_output_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_series(source, 1)
    outside = tmp_path / "k.key"
    keygen(outside)
    for inside in (source / "k.key", tmp_path / "out" / "k.key"):
        inside.parent.mkdir(exist_ok=True)
        inside.write_bytes(outside.read_bytes())
        os.chmod(inside, 0o600)
        code, text = run("anonymize", source, "--out", tmp_path / "out", "--key-file", inside)
        assert code == ExitCode.USAGE and "inside an input or output folder" in text


def test_key_file_and_passphrase_together_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_series(source, 1)
    path = tmp_path / "k.key"
    keygen(path)
    args = ("anonymize", source, "--out", tmp_path / "o", "--key-file", path, "--key", "x")
    code, text = run(*args)
    assert code == ExitCode.USAGE and "not both" in text


def test_the_same_key_file_gives_the_same_headers_and_only_its_id_is_recorded(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in"
    write_series(source, 3)
    path = tmp_path / "k.key"
    key = keygen(path)
    common = ("--format", "dicom", "--no-ocr", "-q", "--key-file", path)
    for out in ("a", "b"):
        assert run("anonymize", source, "--out", tmp_path / out, *common)[0] == 0
    first, second = headers(tmp_path / "a"), headers(tmp_path / "b")
    assert len(first) == 3 and first == second
    manifest = (tmp_path / "a" / MANIFEST_NAME).read_bytes()
    assert keys.key_id(key).encode() in manifest
    for secret in (key, key.hex().encode()):
        assert secret not in manifest
        assert all(secret not in data for data in first.values())
    assert run("report", tmp_path / "a")[0] == 0
    page = (tmp_path / "a" / "report.html").read_text()
    assert keys.key_id(key) in page and key.hex() not in page
    ds = dcmread(next(iter((tmp_path / "a").rglob("*.dcm"))))
    assert str(ds.PatientID) == Pseudonymizer(key).patient(f"PatientID={PHI['patient_id']}")


def test_another_key_file_is_refused_on_resume(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_series(source, 1)
    one, two = tmp_path / "one.key", tmp_path / "two.key"
    keygen(one), keygen(two)
    out = tmp_path / "out"
    assert run("anonymize", source, "--out", out, "--key-file", one, "--no-ocr", "-q")[0] == 0
    code, text = run("anonymize", source, "--out", out, "--key-file", two, "--no-ocr")
    assert code == ExitCode.USAGE and "--key-file" in text


def test_domains_keep_purposes_apart() -> None:
    pseudo = Pseudonymizer(bytes(range(32)))
    value = "1.2.826.0.1.3680043.8.498.1001"
    digests = {domain: pseudo.digest(domain, value) for domain in DOMAINS}
    assert len(set(digests.values())) == len(DOMAINS)
    expected_key = hmac.digest(pseudo.key, b"deid-domain\0uid", "sha256")
    assert domain_key(pseudo.key, "uid") == expected_key != pseudo.key
    assert digests["uid"] == hmac.digest(expected_key, f"\0{value}".encode(), "sha256")
    assert pseudo.digest("id:AccessionNumber", "A1") != pseudo.digest("id:StudyID", "A1")
    with pytest.raises(ValueError, match="unknown pseudonym domain"):
        pseudo.digest("nosuch", value)


def test_key_ids_name_keys_without_revealing_them() -> None:
    key = bytes(range(32))
    assert keys.key_id(key) == keys.key_id(bytes(range(32))) != keys.key_id(bytes(32))
    assert key.hex()[:12] not in keys.key_id(key)
    assert keys.key_id(key)[2:] != hashlib.sha256(key).hexdigest()[:12]


def test_read_key_file_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a regular file"):
        keys.read_key_file(tmp_path)
