"""A batch run on the terminal: the progress bar, the lines per file, JSON records.

Everything printed here names inputs as the batch names them (relative, escaped, or by
number) and never quotes a value from a file.
"""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deid import batch
from deid.manifest import Manifest
from deid.record import FileRecord
from deid.settings import Settings


def stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM ends a run as Ctrl-C does: workers stopped, the summary printed."""
    raise KeyboardInterrupt


def run_with_progress(
    items: list[batch.Input],
    settings: Settings,
    manifest: Manifest,
    workers: int,
    quiet: bool,
    verbose: bool,
    as_json: bool,
    out: Console,
    err: Console,
    engine: batch.Engine | None = None,
) -> batch.Summary:
    """Plan against the manifest, then process with a progress bar on stderr, in `workers`
    local processes or with `engine` (a Dask cluster): the bar and the lines look the same."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=quiet,
    )
    with progress:
        looking = progress.add_task("reading inputs", total=len(items), rate="")
        try:
            work = batch.plan(
                items,
                manifest,
                on_seen=lambda: progress.advance(looking),
                resume=not settings.overwrite,
            )
        except KeyboardInterrupt:
            summary = batch.Summary(total=len(items), interrupted=True)
            summary.done_before = manifest.finished_count()
            return summary
        progress.remove_task(looking)
        if work.done_before:
            progress.console.print(
                f"resuming: {work.done_before} of {len(items)} inputs were done before"
            )
        task = progress.add_task(
            "de-identifying", total=len(work.todo) + len(work.settled), rate=""
        )
        started = time.monotonic()
        done = 0

        def on_result(result: FileRecord) -> None:
            nonlocal done
            progress.advance(task)
            if as_json:
                out.print(json.dumps(result.stored(settings.out_dir)))
            if result.status == "failed":
                progress.console.print(f"FAILED {result.path}: {result.reason}")
            elif verbose and result.status in ("skipped", "duplicate"):
                progress.console.print(f"{result.status} {result.path}: {result.reason}")
            done += 1
            progress.update(
                task, rate=f"{done / max(1e-6, time.monotonic() - started):.1f} files/s"
            )

        manifest.begin(len(items))
        summary = batch.run(
            work,
            settings,
            jobs=workers,
            total=len(items),
            manifest=manifest,
            on_result=on_result,
            engine=engine,
        )
        manifest.end("interrupted" if summary.interrupted else "finished")
    return summary
