"""`deid share`: the command line of the bundle (parse, call `deid.share`, format)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from deid import profiles
from deid.cliutil import ProfileOpt, err, fail, load_profile, make_settings, out
from deid.errors import DeidError, UsageError
from deid.inputs import shown
from deid.share.bundle import Bundle, Sent, ShareOptions, default_folder, make_bundle
from deid.share.scans import ScanOptions
from deid.share.windows import WINDOW_CHOICES


def share_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="DICOM files, folders, discs (DICOMDIR followed), photos."),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Bundle folder (default: a new deid-share folder here)."),
    ] = None,
    slices: Annotated[
        int, typer.Option(min=1, max=64, help="Slices per series, evenly spaced.")
    ] = 1,
    montage: Annotated[
        bool, typer.Option(help="One labelled grid per series instead of separate images.")
    ] = False,
    window: Annotated[
        str, typer.Option(help="Display window: " + "|".join(WINDOW_CHOICES) + ".")
    ] = "auto",
    faces: Annotated[str, typer.Option(help="Cover faces by: blur or black.")] = "blur",
    allow_documents: Annotated[
        bool,
        typer.Option(help="Share photos of identity documents too (text and portrait covered)."),
    ] = False,
    review: Annotated[
        bool, typer.Option(help="Write review.html: each image as it will be sent, and why.")
    ] = False,
    max_side: Annotated[
        int, typer.Option(min=256, help="Longest side of an image, in pixels.")
    ] = 2048,
    max_mb: Annotated[float, typer.Option(min=0.1, help="Largest file size, in megabytes.")] = 4.0,
    profile: ProfileOpt = profiles.DEFAULT_PROFILE,
    redact_paths: Annotated[
        bool, typer.Option(help="Name inputs by number in every message, never by path.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
) -> None:
    """Make a small bundle of images ready to send to an AI assistant.

    One image per series (the key slice, windowed like a viewer), every photo upright
    with its metadata dropped; burned-in text and faces covered, identity documents
    refused; a context.txt of safe facts; and a final check of the whole bundle.
    """
    if window not in WINDOW_CHOICES:
        raise fail(UsageError(f"--window {window!r}: use {', '.join(WINDOW_CHOICES)}"))
    if faces not in ("blur", "black"):
        raise fail(UsageError(f"--faces {faces!r}: use blur or black"))
    for path in inputs:
        if not path.exists():
            raise fail(UsageError("no such file or folder", shown(str(path))))
    resolved = load_profile(profile)
    folder = out_dir if out_dir is not None else default_folder(Path.cwd())
    settings = make_settings(resolved, os.urandom(32), folder)
    options = ShareOptions(
        scan=ScanOptions(slices=slices, montage=montage, window=window, faces=faces),
        max_side=max_side,
        max_bytes=int(max_mb * 1_000_000),
        allow_documents=allow_documents,
        review=review,
    )

    def heard(sent: Sent) -> None:
        if not quiet:
            done = f" ({'; '.join(sent.done)})" if sent.done else ""
            out.print(f"{sent.source} -> {', '.join(sent.outputs)}{done}")
            for note in sent.notes:
                err.print(f"note: {sent.source}: {note}")

    try:
        bundle = make_bundle(
            inputs,
            folder,
            settings,
            options,
            redact_paths=redact_paths,
            on_sent=heard,
        )
    except DeidError as exc:
        raise fail(exc) from None
    _finish(bundle, quiet)
    raise typer.Exit(bundle.exit_code)


def _finish(bundle: Bundle, quiet: bool) -> None:
    for problem in bundle.problems:
        err.print(f"left out: {problem.source}: {problem.reason}")
    for finding in bundle.findings:
        err.print(f"final check: {finding}; image taken out of the bundle")
    if bundle.skipped and not quiet:
        out.print(f"{bundle.skipped} file(s) neither DICOM nor a photo: skipped")
    if (bundle.images and not quiet) or bundle.findings:
        out.print(bundle.line())
    if not bundle.images:
        why = (
            "the final check took every image out"
            if bundle.findings
            else "no DICOM image or photo could be made"
        )
        err.print(f"error: nothing to share: {why}")
    elif not quiet:
        out.print(f"context to paste beside them: {bundle.folder / 'context.txt'}")
        review = bundle.folder / "review.html"
        if review.exists():
            out.print(f"look before sending: {review}")
