"""A profile compiled once, before any file is touched: checked by the schema, then built.

The loader alone would accept a misspelt section (`[[regoins.fixed]]`) and silently run
without it, a leak by typo, and a value out of range (`padding = -3`) would fail every
file one by one. `compile_profile` runs the checks `deid profiles validate` runs, with the
one schema, on the profile and on every file it extends, and refuses the profile with
every problem listed before any input is read.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from deid import profiles, validate
from deid.errors import ProfileError
from deid.profiles import Profile


def compile_profile(ref: str) -> Profile:
    """The profile `ref` (a built-in name or a path), after checking every file it uses.

    Raises `ProfileError` (exit code 2) if `ref` names no profile, or if any of its files
    has an error; the message lists every problem, errors and warnings, one per line, as
    `deid profiles validate` prints them. Warnings alone do not stop it.

    A Safe Harbor gap stops it only when the profile claims Safe Harbor (here or in a
    profile it extends): outputs made under that claim are handed on as Safe Harbor, and
    a gap is an identifier the claim promises is gone. A profile that does not claim it
    (research, or the Basic Profile with its options) keeps such values on purpose, so
    its gaps are for `deid profiles validate --safe-harbor` to show, not a reason to stop.
    """
    path = profiles.locate(ref)
    problems = [p for file in _files(path) for p in validate.validate_file(file)]
    if validate.has_errors(problems):
        errors = sum(p.severity == "error" for p in problems)
        listing = "\n".join(str(p) for p in problems)
        raise ProfileError(
            f"profile {ref} is not valid ({errors} error{'s' if errors != 1 else ''}); "
            f"nothing was processed:\n{listing}"
        )
    return profiles.load(str(path))


def _files(path: Path) -> list[Path]:
    """The profile file and every file it extends, each once, the profile first."""
    found: list[Path] = []
    seen: set[Path] = set()

    def visit(file: Path) -> None:
        if file.resolve() in seen:
            return
        seen.add(file.resolve())
        found.append(file)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return  # validate_file reports it
        for ref, _ in validate.extends_refs(data):
            target = validate.extends_target(ref, file.resolve().parent)
            if isinstance(target, Path):
                visit(target)

    visit(path)
    return found
