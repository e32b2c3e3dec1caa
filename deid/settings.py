"""Everything a run needs to process a file, resolved once from the profile and options.

Settings are plain data, so a worker process receives them once when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deid import pixels, text
from deid.errors import UsageError
from deid.limits import Limits
from deid.profiles import Profile
from deid.pseudonym import Pseudonymizer


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to process a file; plain data, so it pickles."""

    profile: Profile
    key: bytes
    out_dir: Path
    formats: frozenset[str] = frozenset({"png"})
    tree: bool = False
    frames: str = "middle"
    context: bool = False
    overwrite: bool = False
    detect_text: bool = True
    render: pixels.RenderOptions = field(default_factory=pixels.RenderOptions)
    compress_level: int = 1
    max_size: int = 0
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def for_profile(
        cls, profile: Profile, key: bytes, out_dir: Path, **overrides: object
    ) -> Settings:
        """Settings from a profile's `[render]`, `[text]`, `[png]` and `[limits]` tables,
        then overrides.

        Overrides that are None keep the profile's value, so a CLI passes its options as
        they come. A field of `Limits` (`max_frames=...`) overrides that one limit.
        """
        limit_names = {f.name for f in fields(Limits)}
        limits_given: dict[str, Any] = {
            k: overrides.pop(k) for k in list(overrides) if k in limit_names
        }
        render = profile.section("render")
        png = profile.section("png")
        switches = {k: render[k] for k in ("modality_lut", "voi", "palette") if k in render}
        values: dict[str, Any] = {
            "frames": str(render.get("frames", "middle")),
            "detect_text": profile.section("text").get("detect", "always") != "never",
            "compress_level": int(png.get("compress_level", 1)),
            "max_size": int(png.get("max_size", 0)),
            "limits": Limits.from_profile(profile.section("limits"), **limits_given),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            profile=profile,
            key=key,
            out_dir=out_dir,
            render=pixels.RenderOptions(**switches),
            **values,
        )

    @property
    def pseudonymizer(self) -> Pseudonymizer:
        return Pseudonymizer(self.key)

    @property
    def text_policy(self) -> text.TextPolicy:
        return text.TextPolicy.from_profile(self.profile.section("text"))


def limit_overrides(given: list[str]) -> dict[str, int]:
    """`--limit NAME=N` options as `Settings` overrides, checked against `Limits`."""
    names = [f.name for f in fields(Limits)]
    found: dict[str, int] = {}
    for option in given:
        name, _, value = option.partition("=")
        if name.strip() not in names or not value.strip().isdigit():
            choices = ", ".join(names)
            raise UsageError(f"--limit {option!r}: use NAME=N with NAME one of {choices}")
        found[name.strip()] = int(value)
    return found
