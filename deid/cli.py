"""The command line: parse, call the library, format. No de-identification logic here."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from deid import (
    __version__,
    batch,
    cluster,
    keys,
    leaktest,
    outfolder,
    pipeline,
    profiles,
    report,
    runview,
    validate,
    verify,
)
from deid import inputs as inputs_mod
from deid.cliutil import FramesOpt, ProfileOpt, err, out
from deid.cliutil import fail as _fail
from deid.cliutil import load_profile as _load_profile
from deid.cliutil import make_settings as _settings
from deid.errors import DeidError, ExitCode, UsageError
from deid.output import Transaction, png_bytes
from deid.preview import draw_regions
from deid.pseudonym import Pseudonymizer
from deid.settings import limit_overrides
from deid.sharecli import share_command
from deid.text import TextPolicy

EXIT_CODES = """Exit codes: 0 all written; 1 failures of several kinds; 2 usage error;
3 no DICOM found (or not DICOM); 4 unreadable or truncated; 5 missing pixel codec;
6 refused object (PDF, SR, identity document...); 7 output exists; 8 leak found, output withheld;
9 text search unavailable; 10 unexpected error; 11 disk full;
12 too large for the limits (a profile's [limits]); 130 interrupted (run again to resume)."""

app = typer.Typer(
    help="De-identify DICOM scans by HIPAA Safe Harbor profiles.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profiles_app = typer.Typer(
    help="List, show, validate and leak-test de-identification profiles.", no_args_is_help=True
)
app.add_typer(profiles_app, name="profiles")
app.command("share")(share_command)


@app.command()
def anonymize(
    inputs: Annotated[list[Path], typer.Argument(help="DICOM files or folders (searched deeply).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Outputs: png, dicom, or dicom,png.")
    ] = "png",
    profile: ProfileOpt = profiles.DEFAULT_PROFILE,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="DEID_KEY",
            help="A passphrase for keyed pseudonyms (--key-file is safer: a passphrase "
            "can be guessed). Without a key, a random one per run (runs cannot be linked).",
            show_envvar=True,
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="DEID_KEY_FILE",
            help="Key file made by `deid keygen`: same key, same pseudonyms on any "
            "machine, in any order, resumed or not. Must be readable by you alone.",
            show_envvar=True,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes (default: all cores).")
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run the files on Dask: tcp://HOST:PORT of a running scheduler (--jobs is "
            "ignored), or local:N for N worker processes here. Inputs and outputs must be "
            "on a filesystem every worker sees. Needs pip install 'deid[dask]'."
        ),
    ] = None,
    frames: FramesOpt = None,
    context: Annotated[
        bool, typer.Option(help="Write a .txt note with safe facts beside each image.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(help="Process every input again, replacing its outputs (no resume)."),
    ] = False,
    ocr: Annotated[
        bool | None,
        typer.Option(
            help="Find and black out burned-in text (default from the profile). "
            "--no-ocr leaves pixel text in place: not Safe Harbor for annotated images."
        ),
    ] = None,
    layout: Annotated[
        str, typer.Option(help="flat, tree (patient/study/series), or auto.")
    ] = "auto",
    max_size: Annotated[
        int | None, typer.Option(help="Cap the PNG's longer side, in pixels.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List skipped files.")] = False,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            help="Override a [limits] setting of the profile, e.g. --limit max_frames=20000 "
            "or --limit memory_cap_mib=4096 (repeatable).",
        ),
    ] = None,
    redact_paths: Annotated[
        bool,
        typer.Option(
            help="Name inputs by number in every message (input #12), never by path: "
            "for discs whose folder names are patient names."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each input's record as a JSON line.")
    ] = False,
) -> None:
    """De-identify DICOM files into PNG and/or DICOM, named by pseudonyms.

    The output folder keeps a manifest of the run: run the same command again and it
    resumes, skipping the inputs already done.
    """
    chosen = frozenset(f.strip().lower() for f in formats.split(",") if f.strip())
    if not chosen or not chosen <= {"png", "dicom"}:
        raise _fail(UsageError(f"--format {formats!r}: use png, dicom or dicom,png"))
    if layout not in ("auto", "flat", "tree"):
        raise _fail(UsageError(f"--layout {layout!r}: use auto, flat or tree"))
    if frames is not None and frames not in ("all", "middle") and not frames.isdigit():
        raise _fail(UsageError(f"--frames {frames!r}: use all, middle or a frame number"))
    try:
        limits = limit_overrides(limit or [])
        dask = cluster.parse(scheduler, batch.worker_count(jobs)) if scheduler else None
    except DeidError as exc:
        raise _fail(exc) from None
    resolved = _load_profile(profile)
    tree = layout == "tree" or (layout == "auto" and any(p.is_dir() for p in inputs))
    try:
        file_key = keys.read_key_file(key_file, [*inputs, out_dir]) if key_file else None
        outside: list[str] = []
        named = inputs_mod.discover_named(inputs, out_dir, outside)
        outfolder.prepare(out_dir, inputs)
        pseudo, manifest = outfolder.open_run(out_dir, resolved, key, file_key)
    except DeidError as exc:
        raise _fail(exc) from None
    try:
        settings = _settings(
            resolved,
            pseudo.key,
            out_dir,
            formats=chosen,
            tree=tree,
            frames=frames,
            context=context,
            overwrite=overwrite,
            detect_text=ocr,
            max_size=max_size,
            **limits,
        )
    except BaseException:
        manifest.close()
        raise
    items = [
        batch.Input(
            path,
            f"input #{number}" if redact_paths else name,
            pseudo.digest("input", name).hex()[:20],
        )
        for number, (path, name) in enumerate(named, start=1)
    ]
    if outside and not quiet:
        listed = verbose and not redact_paths
        err.print(
            f"not read: {len(outside)} link(s) leading out of the input folder"
            + (f" ({', '.join(outside[:5])})" if listed else "")
        )
    signal.signal(signal.SIGTERM, runview.stop_like_ctrl_c)
    if manifest.unfinished():
        outfolder.sweep_partials(out_dir)
    with manifest:
        try:
            with cluster.open_engine(dask, out_dir, inputs) as engine:
                summary = runview.run_with_progress(
                    items,
                    settings,
                    manifest,
                    batch.worker_count(jobs),
                    quiet,
                    verbose,
                    as_json,
                    out,
                    err,
                    engine=engine,
                )
        except DeidError as exc:  # the cluster cannot be reached or cannot see the files
            raise _fail(exc) from None
    if summary.interrupted:
        outfolder.sweep_partials(out_dir)
        err.print(f"{summary.done} of {summary.total} done; run again to resume")
        raise typer.Exit(summary.exit_code)
    if summary.stopped:
        outfolder.sweep_partials(out_dir)
        err.print(
            f"stopped: {summary.stopped}; {summary.done} of {summary.total} done "
            "(free some space, then run again to resume)"
        )
    nothing = summary.counts["written"] + summary.counts["failed"] + summary.done_before == 0
    if nothing and not verbose and not quiet:
        for result in summary.problems[:20]:
            err.print(f"skipped {result.path}: {result.reason}")
    if not quiet or summary.counts["failed"]:
        err.print(summary.line())
    if nothing and not summary.counts["duplicate"]:
        err.print("error: no DICOM file found in the input")
    raise typer.Exit(summary.exit_code)


@app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="Where to write the new key file.")],
) -> None:
    """Write a new 256-bit pseudonym key, readable by you alone (mode 0600).

    Give it to every run that must link its pseudonyms (`--key-file`), on every machine.
    Keep it outside the folders of images and outputs, and keep a copy: without it,
    later runs cannot give a patient the same pseudonym again.
    """
    try:
        made = keys.write_key_file(key_file)
    except DeidError as exc:
        raise _fail(exc) from None
    out.print(f"wrote key {made} to {key_file} (mode 0600); keep it secret")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="One DICOM file.")],
    profile: ProfileOpt = profiles.DEFAULT_PROFILE,
    preview: Annotated[
        Path | None,
        typer.Option(
            help="Write the rendered image with the text regions drawn on it. "
            "It still shows the original text: keep it private."
        ),
    ] = None,
    frames: FramesOpt = None,
    ocr: Annotated[bool | None, typer.Option(help="Look for burned-in text.")] = None,
) -> None:
    """Show what the profile would change in one file, without writing any output."""
    resolved = _load_profile(profile)
    throwaway = Pseudonymizer.from_passphrase(None).key
    settings = _settings(resolved, throwaway, Path("."), frames=frames, detect_text=ocr)
    try:
        found = pipeline.inspect(path, settings, preview=preview is not None)
    except DeidError as exc:
        raise _fail(exc) from None
    name = inputs_mod.shown(str(path))
    burned_in = inputs_mod.shown(str(found.burned_in_annotation))
    out.print(f"{name}: {found.kind}, BurnedInAnnotation {burned_in}")
    out.print(f"\nAttributes changed by profile {resolved.name} ({len(found.changes)}):")
    width = max((len(c.path) for c in found.changes), default=0)
    for change in found.changes:
        rule = change.rule
        out.print(
            f"  {change.path:{width}}  {change.tag_text}  {rule.action.value:12}  {rule.source}"
        )
    out.print("\nWhat each action does:")
    described = {resolved.describe(c.rule): c.rule.action.value for c in found.changes}
    for words, action in sorted(described.items(), key=lambda item: item[1]):
        out.print(f"  {action:12}  {words}")
    if found.warnings:
        out.print(f"\nLibrary warnings, by kind ({len(found.warnings)}):")
        for kind in found.warnings:
            out.print(f"  {kind}")
    if settings.detect_text:
        out.print(f"\nText regions in the pixels ({len(found.regions)}):")
        for region in found.regions:
            box = region.box
            where = f"x {box.left}-{box.right}, y {box.top}-{box.bottom}"
            marker = f" {region.marker!r}" if region.marker else ""
            out.print(f"  {where:28}  {region.decision:7}  {region.reason}{marker}")
        if not found.regions:
            out.print("  none found")
    if preview is not None and found.preview is not None:
        image = draw_regions(found.preview, found.regions)
        txn = Transaction(overwrite=True)
        txn.add(preview, png_bytes(image))
        txn.commit()
        out.print(f"preview written: {inputs_mod.shown(str(preview))}")


@app.command("verify")
def verify_command(
    outputs: Annotated[list[Path], typer.Argument(help="Output files or folders to check.")],
    originals: Annotated[
        list[Path] | None,
        typer.Option("--originals", help="The inputs the outputs came from (their values)."),
    ] = None,
    profile: ProfileOpt = profiles.DEFAULT_PROFILE,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="OCR threads.")] = 2,
    faces: Annotated[
        bool, typer.Option(help="A face found in an image is a finding too (share bundles).")
    ] = False,
) -> None:
    """An independent second look at finished outputs. Exit 0 clean, 1 findings, 2 usage.

    Every DICOM element at every depth (file meta and private ones too) is checked
    against the originals' identifying values and against patterns; PNGs must have no
    text chunks, and OCR of their pixels must find no PHI and no text outside the
    profile's allow-list; JPEGs and WebPs likewise. Findings say file, where and what
    kind, never the value.
    """
    resolved = _load_profile(profile)
    try:
        policy = TextPolicy.from_profile(resolved.section("text"))
        report = verify.verify_outputs(
            outputs, originals, policy, jobs=max(1, jobs), profile=resolved, faces=faces
        )
    except DeidError as exc:
        raise _fail(exc) from None
    for line in report.lines():
        out.print(inputs_mod.shown(line))
    err.print(report.summary())
    raise typer.Exit(int(ExitCode.OK if report.clean else ExitCode.MIXED_FAILURES))


@profiles_app.command("test")
def profiles_test(
    name: Annotated[str, typer.Argument(help="Profile name or path.")],
    samples: Annotated[Path, typer.Option("--samples", help="Folder of sample DICOM files.")],
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes (default: all cores).")
    ] = 0,
) -> None:
    """Anonymize samples with a profile in a temporary folder and verify every output.

    Exit 0 when nothing leaked, 1 on any leak or failure: what a team runs in CI.
    """
    try:
        report = leaktest.profile_test(name, samples, jobs=batch.worker_count(jobs))
    except DeidError as exc:
        raise _fail(exc) from None
    for line in report.lines():
        out.print(line)
    raise typer.Exit(int(ExitCode.OK if report.ok else ExitCode.MIXED_FAILURES))


@profiles_app.command("list")
def profiles_list() -> None:
    """List the built-in profiles."""
    for name in profiles.builtin_names():
        loaded = profiles.load(name)
        first = loaded.description.splitlines()[0] if loaded.description else ""
        out.print(f"{name}: {first}")


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or path.")],
    resolved: Annotated[
        bool,
        typer.Option(
            "--resolved",
            help="List every rule after `extends` and Annex E generation, with its file:line.",
        ),
    ] = False,
) -> None:
    """Show a profile's description, settings and rules, each in its own words."""
    loaded = _load_profile(name)
    out.print(f"{loaded.name}\n\n{loaded.description}\n")
    settings = [
        f"dates: {loaded.date_mode.value}"
        + (f" (up to {loaded.shift_days} days)" if loaded.date_mode.value == "shift" else ""),
        f"ages: {loaded.age_mode.value}",
        f"safe harbor claimed: {'yes' if loaded.claims_safe_harbor else 'no'}",
    ]
    for section in ("annex_e", "objects", "render", "text", "regions", "png", "method"):
        settings += [f"{section}.{k} = {v}" for k, v in loaded.section(section).items()]
    out.print("\n".join(settings) + "\n")
    own = Path(loaded.sources[-1]).name + ":"
    rules = [
        (selector, rule)
        for selector, rule in loaded.rules()
        if resolved or rule.source.startswith(own)
    ]
    out.print("Rules (resolved):" if resolved else f"Rules set in {own[:-1]} (--resolved for all):")
    width = max((len(selector) for selector, _ in rules), default=0)
    for selector, rule in rules:
        out.print(
            f"  {selector:{width}}  {rule.action.value:12}  {loaded.describe(rule)}  "
            f"[{rule.source}]"
        )


@profiles_app.command("validate")
def profiles_validate(
    paths: Annotated[
        list[Path], typer.Argument(help="Profile files, or folders to search for *.toml.")
    ],
    safe_harbor: Annotated[
        bool,
        typer.Option(
            "--safe-harbor",
            help="Also prove HIPAA Safe Harbor coverage of every profile, claimed or not.",
        ),
    ] = False,
) -> None:
    """Check profiles: every problem at once, as file:line: message. Exit 0 clean, 1 problems."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise _fail(UsageError(f"no such file or folder: {missing[0]}"))
    problems = validate.validate_paths(paths, safe_harbor=safe_harbor)
    for problem in problems:
        out.print(str(problem))
    checked = len(validate.profile_files(paths))
    failed = validate.has_errors(problems)
    profiles_word = "profile" if checked == 1 else "profiles"
    problems_word = "problem" if len(problems) == 1 else "problems"
    err.print(f"{checked} {profiles_word} checked, {len(problems)} {problems_word}")
    raise typer.Exit(int(ExitCode.MIXED_FAILURES if failed else ExitCode.OK))


@app.command("report")
def report_command(
    out_dir: Annotated[Path, typer.Argument(help="An output folder of deid anonymize.")],
    html_path: Annotated[
        Path | None,
        typer.Option("--html", help="Where to write the page (default: OUT/report.html)."),
    ] = None,
    thumbnails: Annotated[
        int, typer.Option(help="Show at most this many files and thumbnails one by one.")
    ] = 200,
) -> None:
    """Write one self-contained HTML page of a run: totals, covered boxes, actions, failures.

    Built from the folder's manifest and its de-identified outputs only: nothing
    identifying, no key, nothing loaded from the network.
    """
    try:
        page = report.build(out_dir, limit=max(0, thumbnails))
    except DeidError as exc:
        raise _fail(exc) from None
    target = html_path if html_path is not None else out_dir / "report.html"
    txn = Transaction(overwrite=True)
    txn.add(target, page.encode("utf-8"))
    txn.commit()
    out.print(f"report written: {inputs_mod.shown(str(target))}")


def version_callback(value: bool) -> None:
    if value:
        out.print(f"deid {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = None,
) -> None:
    """De-identify DICOM scans by HIPAA Safe Harbor profiles."""


def main() -> None:
    app()
