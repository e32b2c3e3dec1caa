"""What every command of the command line shares: the consoles, the profile option,
and turning a library error into its message and exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deid import profiles
from deid.compiler import compile_profile
from deid.errors import DeidError
from deid.inputs import shown
from deid.settings import Settings

out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

ProfileOpt = Annotated[
    str, typer.Option("--profile", "-p", help="Built-in profile name or path to a TOML file.")
]
FramesOpt = Annotated[
    str | None,
    typer.Option(help="Frames to render as PNG: all, middle or a 1-based frame number."),
]


def fail(exc: DeidError) -> typer.Exit:
    err.print(f"error: {shown(str(exc))}")
    return typer.Exit(int(exc.exit_code))


def load_profile(ref: str) -> profiles.Profile:
    """The profile, compiled once: every problem of its files stops the command (exit 2)."""
    try:
        return compile_profile(ref)
    except DeidError as exc:
        raise fail(exc) from None


def make_settings(
    profile: profiles.Profile, key: bytes, out_dir: Path, **overrides: object
) -> Settings:
    try:
        return Settings.for_profile(profile, key, out_dir, **overrides)
    except DeidError as exc:
        raise fail(exc) from None
