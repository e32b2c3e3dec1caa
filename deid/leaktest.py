"""Profile testing: run a profile over sample files and check what comes out.

A team that writes or extends a profile wants to know, in CI, that it still lets nothing
identifying through on their own kind of data. `profile_test` anonymizes the samples the
way `deid anonymize --format dicom,png --context` would, into a temporary folder, checks
every output with `deid.verify` against the samples' own values (a value a sample held
unchanged where this profile lets it stay is not a leak there), and deletes everything
it wrote. The report names outputs by their place under that folder, never by content.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from deid import classify, output, reader, tags
from deid.batch import Summary, run_paths
from deid.errors import DeidError, LeakError
from deid.inputs import discover
from deid.profiles import Action, Profile, Rule, Survives, load
from deid.pseudonym import Pseudonymizer
from deid.record import FileRecord
from deid.settings import Settings
from deid.verify import (
    Leak,
    VerifyReport,
    check_dicom,
    collect_originals,
    kept_on_purpose,
    verify_outputs,
)

# Pseudonyms only name outputs that are deleted at the end, so any fixed key will do;
# a fixed one keeps the report's output names the same from run to run.
_KEY = "deid-profile-test"


@dataclass
class ProfileTestReport:
    """The outcome of one profile test: the anonymize run, and the leaks in its outputs.

    `summary` counts the run (written, skipped, failed) and holds its problems with
    their reasons. `refusals` are the failures the profile asks for (objects it lists
    under `objects.refuse`); `failures` are all the others but `withheld`: files whose
    output the pipeline's own leak check stopped. What the profile let through in
    those is in `withheld_leaks`, named by sample. `verify` holds the check of the
    outputs that were written, with file names relative to the temporary output
    folder; `sources` maps each of those to its sample.
    """

    profile: str
    samples: str
    summary: Summary
    verify: VerifyReport
    refusals: list[FileRecord] = field(default_factory=list)
    failures: list[FileRecord] = field(default_factory=list)
    withheld: list[FileRecord] = field(default_factory=list)
    withheld_leaks: list[Leak] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    expected: frozenset[str] = frozenset()

    @property
    def leaks(self) -> list[Leak]:
        """Every leak: in written outputs, and in outputs the pipeline withheld.

        Kinds the profile keeps on purpose (full dates of a date-shifting research
        profile, say) are `expected`, listed but not counted.
        """
        found = [*self.verify.leaks, *self.withheld_leaks]
        return [leak for leak in found if leak.kind not in self.expected]

    @property
    def ok(self) -> bool:
        """Nothing leaked, nothing failed but asked-for refusals, and something was written.

        A run that wrote nothing proves nothing about the profile, so it is not ok.
        """
        return not self.leaks and not self.failures and self.summary.counts["written"] > 0

    def lines(self) -> list[str]:
        """What `deid profiles test` prints: the run, each problem, each leak, a verdict."""
        out = [f"profile {self.profile} on {self.samples}: {self.summary.line()}"]
        out += [f"refused as the profile asks: {r.path}: {r.reason}" for r in self.refusals]
        out += [f"FAILED {r.path}: {r.reason}" for r in self.failures]
        if self.expected:
            kinds = ", ".join(sorted(self.expected))
            out.append(f"kept on purpose by this profile (not Safe Harbor): {kinds}")
        for leak in self.verify.leaks:
            if leak.kind in self.expected:
                continue
            source = self.sources.get(leak.file)
            origin = f" (from {source})" if source else ""
            out.append(f"LEAK {leak.file}{origin}: {leak.where}: {leak.kind}")
        for leak in self.withheld_leaks:
            if leak.kind in self.expected:
                continue
            out.append(f"LEAK {leak.file} (output withheld): {leak.where}: {leak.kind}")
        out.append(f"outputs: {self.verify.summary()}")
        verdict = "ok" if self.ok else "FAILED"
        out.append(
            f"{verdict}: {len(self.leaks)} leaks, {len(self.failures)} failures, "
            f"{self.summary.counts['written']} written"
        )
        return out


def settings_for(profile: Profile, out_dir: Path, key: str = _KEY) -> Settings:
    """The settings `deid anonymize --format dicom,png --context` would use for a profile."""
    return Settings.for_profile(
        profile,
        Pseudonymizer.from_passphrase(key).key,
        out_dir,
        formats=frozenset({"dicom", "png"}),
        tree=True,
        context=True,
    )


def _asked_refusal(result: FileRecord, profile: Profile) -> bool:
    """Whether a refused file is of a kind the profile's `objects.refuse` names.

    Other refusals (a kind no profile can turn into images) count as failures.
    """
    if result.kind != "refused":
        return False
    refused = set(profile.section("objects").get("refuse", []))
    try:
        kind = classify.object_kind(reader.read(Path(result.path)), result.path)
    except DeidError:
        return False
    return kind in refused


def profile_test(profile_ref: str, samples: Path, *, jobs: int = 1) -> ProfileTestReport:
    """Anonymize `samples` with a profile and check every output for leaks.

    Outputs are DICOM and PNG with context notes, in the tree layout, under a fixed
    key, in a temporary folder that is removed before returning. Raises `ProfileError`
    for a profile that cannot be loaded, `UsageError` if `samples` does not exist and
    `OcrUnavailableError` if the PNGs cannot be read back.
    """
    profile = load(profile_ref)
    paths = discover([samples])
    results: list[FileRecord] = []
    with tempfile.TemporaryDirectory(prefix="deid-profile-test-") as folder:
        out_dir = Path(folder) / "out"
        out_dir.mkdir()
        settings = settings_for(profile, out_dir)
        summary = run_paths(paths, settings, jobs=jobs, on_result=results.append)
        originals = collect_originals([samples], kept_on_purpose(profile), profile=profile)
        checked = verify_outputs(
            [out_dir], [samples], settings.text_policy, jobs=jobs, values=originals
        )
        failed = [r for r in summary.problems if r.status == "failed"]
        withheld = [r for r in failed if r.kind == LeakError.kind]
        withheld_leaks = _withheld_leaks(withheld, settings, originals, Path(folder) / "withheld")
    sources = {
        Path(path).relative_to(out_dir).as_posix(): result.path
        for result in results
        for path in result.outputs
    }
    refusals = [r for r in failed if _asked_refusal(r, profile)]
    return ProfileTestReport(
        profile=profile.name,
        samples=str(samples),
        summary=summary,
        verify=_relative(checked, out_dir),
        refusals=refusals,
        failures=[r for r in failed if r not in refusals and r not in withheld],
        withheld=withheld,
        withheld_leaks=withheld_leaks,
        sources=sources,
        expected=expected_kinds(profile),
    )


def expected_kinds(profile: Profile) -> frozenset[str]:
    """Finding kinds a profile that does not claim Safe Harbor produces by design."""
    if profile.claims_safe_harbor:
        return frozenset()
    kinds = set()
    dates = (Rule(Action.DATE, "date rules", ""), profile.rule_for(0x00080020, "DA"))
    if any(profile.survives(r) in (Survives.WHOLE, Survives.SHIFTED) for r in dates):
        kinds.add("full date")
    if profile.survives(Rule(Action.AGE, "age rules", "")) is Survives.WHOLE:
        kinds.add("age over 89")
    return frozenset(kinds)


def _withheld_leaks(
    results: list[FileRecord], settings: Settings, originals: Mapping[str, str], folder: Path
) -> list[Leak]:
    """What the profile let through in the files whose output the pipeline withheld.

    The pipeline says only which kinds it found; to say where, the header is
    de-identified again the same way, written to `folder` (inside the temporary
    folder) and checked like any output. Pixels are not redacted: the header is what
    the pipeline's check looks at. `originals` are the samples' values, as
    `collect_originals` gives them.
    """
    if not results:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    leaks: list[Leak] = []
    for number, result in enumerate(results):
        found: list[Leak] = []
        try:
            ds = reader.read(Path(result.path))
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
            tags.deidentify(
                ds,
                settings.profile,
                settings.pseudonymizer,
                pixels_cleaned=settings.detect_text,
            )
            tags.rebuild_file_meta(ds, syntax)
            path = folder / f"{number}.dcm"
            path.write_bytes(output.dicom_bytes(ds))
            found = check_dicom(path, originals)
        except DeidError:
            pass
        if not found:
            found = [Leak(result.path, "header", "identifying value (pipeline leak check)")]
        leaks += [dataclasses.replace(leak, file=result.path) for leak in found]
    return leaks


def _relative(report: VerifyReport, root: Path) -> VerifyReport:
    """The report with file names relative to the (deleted) output folder."""

    def rel(path: str) -> str:
        return Path(path).relative_to(root).as_posix()

    files = [
        dataclasses.replace(
            f,
            path=rel(f.path),
            leaks=tuple(dataclasses.replace(leak, file=rel(leak.file)) for leak in f.leaks),
        )
        for f in report.files
    ]
    return VerifyReport(files)
