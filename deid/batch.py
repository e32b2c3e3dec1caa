"""Batch work: find the files, map `pipeline.process` over them, count the outcomes.

Files are found by walking folders in a stable order; whether a file is DICOM is decided
by its content, in the worker. An output folder inside an input folder is never read
back. Work is a map with no shared state (keyed pseudonyms), so worker processes need
nothing but the settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from deid.errors import ExitCode
from deid.pipeline import FileResult, Settings, process


@dataclass
class Summary:
    """Counts of a run and the results that need the user's attention."""

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[FileResult] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        self.counts[result.status] += 1
        if result.status != "written":
            self.problems.append(result)

    @property
    def exit_code(self) -> int:
        """0 if nothing failed; the failure's own code if all failures share one; else 1."""
        failed = {r.exit_code for r in self.problems if r.status == "failed"}
        if len(failed) == 1:
            return failed.pop()
        if failed:
            return int(ExitCode.MIXED_FAILURES)
        if self.counts["written"] == 0:
            return int(ExitCode.NOT_DICOM)
        return int(ExitCode.OK)

    def line(self) -> str:
        skipped = Counter(r.kind for r in self.problems if r.status == "skipped")
        parts = [f"{self.counts['written']} written"]
        parts.append(f"{skipped.get('not-dicom', 0)} skipped as not DICOM")
        parts.append(f"{self.counts['failed']} failed")
        noun = "file" if self.total == 1 else "files"
        return f"{self.total} {noun}: " + ", ".join(parts)


# A worker's settings, given once when it starts: pickling a profile with every file
# cost about as much as de-identifying a header.
_WORKER: dict[str, Settings] = {}


def _start_worker(settings: Settings) -> None:
    _WORKER["settings"] = settings


def _process_in_worker(path: Path) -> FileResult:
    return process(path, _WORKER["settings"])


def _chunks(paths: list[Path], jobs: int) -> int:
    return max(1, min(32, len(paths) // (jobs * 8) or 1))


def run(
    paths: list[Path],
    settings: Settings,
    *,
    jobs: int = 1,
    on_result: Callable[[FileResult], None] | None = None,
) -> Summary:
    """Process every path with `jobs` worker processes; one bad file never stops the rest."""
    summary = Summary(total=len(paths))
    with ExitStack() as stack:
        results: Iterable[FileResult]
        if jobs <= 1 or len(paths) <= 1:
            results = (process(p, settings) for p in paths)
        else:
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=jobs, initializer=_start_worker, initargs=(settings,)
                )
            )
            results = pool.map(_process_in_worker, paths, chunksize=_chunks(paths, jobs))
        for result in results:
            summary.add(result)
            if on_result:
                on_result(result)
    return summary
