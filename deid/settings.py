"""Everything a run needs to process a file, resolved once from the profile and options.

Settings are plain data, so a worker process receives them once when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid import pixels, text
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

    @classmethod
    def for_profile(
        cls, profile: Profile, key: bytes, out_dir: Path, **overrides: object
    ) -> Settings:
        """Settings from a profile's `[render]`, `[text]` and `[png]` tables, then overrides.

        Overrides that are None keep the profile's value, so a CLI passes its options as
        they come.
        """
        render = profile.section("render")
        png = profile.section("png")
        switches = {k: render[k] for k in ("modality_lut", "voi", "palette") if k in render}
        values: dict[str, Any] = {
            "frames": str(render.get("frames", "middle")),
            "detect_text": profile.section("text").get("detect", "always") != "never",
            "compress_level": int(png.get("compress_level", 1)),
            "max_size": int(png.get("max_size", 0)),
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
