"""Batch work: plan the inputs against the manifest, process the rest, record each one.

Work is a map with no shared state (keyed pseudonyms), so worker processes need nothing
but the settings, given once when each starts. Files are handed out one at a time, a
few ahead of the workers, so progress is true with any number of workers and Ctrl-C
stops within a second or two: workers are stopped, each unfinished file leaves nothing
behind (outputs land whole or not at all), and a rerun resumes from the manifest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType

from deid.errors import (
    CrashedError,
    DeidError,
    DiskFullError,
    ExitCode,
    InputChangedError,
    UnreadableError,
)
from deid.limits import apply_memory_cap
from deid.manifest import Manifest
from deid.pipeline import process
from deid.record import FileRecord, Seen
from deid.settings import Settings


@dataclass(frozen=True)
class Input:
    """One input file: where it is, how messages name it, its keyed id."""

    path: Path
    name: str
    input_id: str = ""


# What runs the files of a plan: given the inputs to do and the settings, a generator of
# their records as they end, those of one task together. Closing it stops the work
# still in flight. The local process pool is one (`local_engine`); `deid.cluster` has
# one for Dask.
Records = Generator[list[FileRecord], None, None]
Engine = Callable[[list[tuple[Input, Seen]], Settings], Records]


@dataclass
class Pacer:
    """How many files go in one task: enough that a task lasts about `target` seconds,
    so handing out a task (a pickle, a wake-up, a scheduler's bookkeeping) costs little
    beside the work, and few enough that every worker still has work at the end.

    One file a task until the first records tell how long a file takes here.
    """

    target: float
    most: int = 64
    seconds: float = 0.0
    files: int = 0

    def ended(self, record: FileRecord) -> None:
        self.seconds += sum(record.seconds.values())
        self.files += 1

    def size(self, left: int, workers: int) -> int:
        if not self.files:
            return 1
        mean = max(self.seconds / self.files, 1e-4)
        fair = max(1, left // (2 * max(1, workers)))
        return max(1, min(self.most, fair, int(self.target / mean)))


@dataclass
class Summary:
    """Counts of a run and the results that need the user's attention."""

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[FileRecord] = field(default_factory=list)
    done_before: int = 0
    interrupted: bool = False
    stopped: str = ""

    def add(self, result: FileRecord) -> None:
        self.counts[result.status] += 1
        if result.status not in ("written", "duplicate"):
            self.problems.append(result)

    @property
    def done(self) -> int:
        """Inputs finished, in this run or an earlier one into the same folder."""
        finished = self.counts["written"] + self.counts["skipped"] + self.counts["duplicate"]
        return self.done_before + finished

    @property
    def exit_code(self) -> int:
        """130 if interrupted; 0 if nothing failed; the failures' own code if they share one."""
        if self.interrupted:
            return int(ExitCode.INTERRUPTED)
        if self.stopped:
            return int(ExitCode.DISK_FULL)
        failed = {r.exit_code for r in self.problems if r.status == "failed"}
        if len(failed) == 1:
            return failed.pop()
        if failed:
            return int(ExitCode.MIXED_FAILURES)
        if self.counts["written"] + self.counts["duplicate"] + self.done_before == 0:
            return int(ExitCode.NOT_DICOM)
        return int(ExitCode.OK)

    def line(self) -> str:
        skipped = Counter(r.kind for r in self.problems if r.status == "skipped")
        parts = [f"{self.counts['written']} written"]
        if self.done_before:
            parts.append(f"{self.done_before} done before")
        if self.counts["duplicate"]:
            parts.append(f"{self.counts['duplicate']} duplicates")
        parts.append(f"{skipped.get('not-dicom', 0)} skipped as not DICOM")
        parts.append(f"{self.counts['failed']} failed")
        noun = "file" if self.total == 1 else "files"
        return f"{self.total} {noun}: " + ", ".join(parts)


@dataclass
class Plan:
    """What a run will do: inputs to process, records settled without processing them
    (inputs that cannot even be looked at), and the number of inputs done before."""

    todo: list[tuple[Input, Seen]] = field(default_factory=list)
    settled: list[FileRecord] = field(default_factory=list)
    done_before: int = 0


def plan(
    inputs: Sequence[Input],
    manifest: Manifest | None = None,
    on_seen: Callable[[], None] | None = None,
    *,
    resume: bool = True,
) -> Plan:
    """Look at every input and sort it: done before, or to do. Nothing is decoded, and
    nothing is read but the inputs a finished run saw with another size or time.

    An input is done before when the manifest has its id with the same size and time,
    or, when those changed, the same content. The digest of an input to do is taken by
    the worker that reads it, so the client of a cluster never reads the inputs; copies
    of one content are told apart as their records arrive (`run`). Without `resume`
    (`--overwrite`) every input is done again.
    """
    result = Plan()
    for item in inputs:
        try:
            seen = Seen.stat_of(item.path)
            before = manifest.done(item.input_id) if manifest and resume and item.input_id else None
            if before is not None and before[1] != seen.signature:
                seen = Seen.of(item.path)
                before = before if before[0] == seen.digest else None
        except OSError as exc:
            result.settled.append(_unreadable(item, exc))
            continue
        finally:
            if on_seen:
                on_seen()
        if before is not None:
            result.done_before += 1
        else:
            result.todo.append((item, seen))
    return result


def _as_duplicate(record: FileRecord, first: str) -> FileRecord:
    """The record of an input whose content equals one written before: its outputs are
    that input's (the same bytes under the same names), so none are its own."""
    return FileRecord(
        record.path,
        "duplicate",
        record.input_id,
        record.digest,
        object=record.object,
        reason="same content as an earlier input",
        duplicate_of=first,
        seen=record.seen,
    )


def _failed(item: Input, digest: str, error: DeidError) -> FileRecord:
    """The record of an input that failed before or outside its own pipeline run."""
    return FileRecord(
        item.name,
        "failed",
        item.input_id,
        digest,
        kind=error.kind,
        reason=error.message,
        exit_code=error.exit_code,
    )


def _unreadable(item: Input, exc: OSError) -> FileRecord:
    """The record of an input that could not even be read for its digest."""
    gone = isinstance(exc, FileNotFoundError)
    error = (
        InputChangedError("the input is gone (deleted or moved during the run)")
        if gone
        else UnreadableError(f"cannot read the file: {exc.strerror or type(exc).__name__}")
    )
    return _failed(item, "", error)


_PR_SET_PDEATHSIG = 1

# A worker's settings, given once when it starts: pickling a profile with every file
# cost about as much as de-identifying a header.
_WORKER: dict[str, Settings] = {}


def _start_worker(settings: Settings) -> None:
    _WORKER["settings"] = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    signal.signal(signal.SIGTERM, _exit_on_term)
    _die_with_parent()
    apply_memory_cap(settings.limits)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker when its parent dies (even by SIGKILL),
    so no worker goes on writing after the run is gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        sys.exit(128 + signal.SIGTERM)


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds open writes, so no partial output stays behind


def _process_in_worker(item: Input, seen: Seen) -> FileRecord:
    try:
        return _processed(item, seen, _WORKER["settings"])
    except SystemExit as stop:  # SIGTERM: the file's writes are undone; now leave at once
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def _processed(item: Input, seen: Seen, settings: Settings) -> FileRecord:
    record = process(item.path, settings, seen=seen, name=item.name)
    record.input_id = item.input_id
    record.seen = seen.signature
    return record


def run(
    work: Plan,
    settings: Settings,
    *,
    jobs: int = 1,
    total: int | None = None,
    manifest: Manifest | None = None,
    on_result: Callable[[FileRecord], None] | None = None,
    engine: Engine | None = None,
) -> Summary:
    """Process the plan with `jobs` worker processes, or with `engine` when one is given;
    one bad file never stops the rest.

    Records go to the manifest as their task ends (a file, or a few fast ones), here in
    the calling process whatever the engine. Ctrl-C ends the run early with
    `Summary.interrupted` set; what was finished stays finished. A full disk, met in
    writing an output or the manifest, ends it with `Summary.stopped` set: every file
    after would fail the same way. A task whose records the manifest could not store
    is not counted; a rerun does its files again.
    """
    summary = Summary(total=total if total is not None else _count(work))
    summary.done_before = work.done_before
    firsts: dict[str, str] = {}  # digest -> the first input written with it (no manifest)

    def finish(records: list[FileRecord]) -> None:
        """Record what one task ended: in the manifest at once, then on the terminal."""
        digests = [r.digest for r in records if r.status == "written" and r.digest]
        # digest -> first input written with it: the manifest's, with this task's added
        known = manifest.first_written(digests) if manifest is not None else firsts
        ended = []
        for record in records:
            if record.status == "written" and record.digest:
                own = record.input_id or record.path
                first = known.setdefault(record.digest, own)
                if first != own:
                    record = _as_duplicate(record, first)
            ended.append(record)
        with _stops_held():  # the manifest and the count agree, whenever Ctrl-C comes
            if manifest is not None:
                try:
                    manifest.add_all(ended, settings.out_dir)
                except DiskFullError as exc:
                    summary.stopped = exc.message
                    return
            for record in ended:
                summary.add(record)
        for record in ended:
            if on_result:
                on_result(record)
            if record.kind == DiskFullError.kind:
                summary.stopped = record.reason

    results = (engine or local_engine(jobs))(work.todo, settings)
    try:
        finish(work.settled)
        if not summary.stopped:
            for records in results:
                finish(records)
                if summary.stopped:
                    break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        results.close()  # stops the workers of a run that ends early
    return summary


@contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then acted on as they would
    have been (in the main thread only: elsewhere no signal arrives)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[signal.Signals] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signal.Signals(signum))

    before = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if held:
            handler = before[held[0]]
            if callable(handler):
                handler(held[0], None)  # Ctrl-C's own handler, or the run's for SIGTERM
            else:
                raise KeyboardInterrupt


def local_engine(jobs: int) -> Engine:
    """The engine of worker processes on this machine, `jobs` of them."""

    def engine(todo: list[tuple[Input, Seen]], settings: Settings) -> Records:
        return _results(todo, settings, jobs)

    return engine


def _count(work: Plan) -> int:
    return work.done_before + len(work.settled) + len(work.todo)


# Seconds of work in one task of the local pool: a few hundredths keep the pool's own
# cost per task (a pickle each way, two thread wake-ups) small beside tags-only files,
# and Ctrl-C still stops within a moment.
LOCAL_TASK_SECONDS = 0.05

Work = list[tuple[Input, Seen]]


def _results(todo: Work, settings: Settings, jobs: int) -> Records:
    """Records as files end, from worker processes: a crash costs the file that caused it.

    Files go out a few at a time (`Pacer`). When a worker dies (a codec crash, a
    signal), every file it might have held is run again alone in a fresh worker; the one
    that kills that worker too is failed as "decoder crashed", and the batch goes on
    with new workers.
    """
    workers = max(1, min(jobs, len(todo)))
    pool = _pool(settings, workers)
    pacer = Pacer(LOCAL_TASK_SECONDS)
    in_flight: dict[Future[list[FileRecord]], Work] = {}
    queue = deque(todo)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                size = pacer.size(len(queue), workers)
                task = [queue.popleft() for _ in range(min(size, len(queue)))]
                in_flight[pool.submit(_process_many_in_worker, task)] = task
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            suspects: Work = []
            for future in finished:
                task = in_flight.pop(future)
                try:
                    records = future.result()
                except BrokenProcessPool:
                    suspects += task
                    continue
                for record in records:
                    pacer.ended(record)
                yield records
            if suspects:
                for task in in_flight.values():
                    suspects += task
                in_flight.clear()
                _stop(pool)
                for item, seen in suspects:
                    yield [_alone(item, seen, settings)]
                pool = _pool(settings, workers)
    finally:
        _stop(pool)


def _process_many_in_worker(task: Work) -> list[FileRecord]:
    return [_process_in_worker(item, seen) for item, seen in task]


def _pool(settings: Settings, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(settings,))


def _alone(item: Input, seen: Seen, settings: Settings) -> FileRecord:
    """One file in a process of its own, to tell the file that crashes one from the rest.

    A plain process, not a pool: its exit status says how it died.
    """
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(
        target=_alone_in_child, args=(item, seen, settings, send), daemon=True
    )
    process.start()
    send.close()
    try:
        record: FileRecord = receive.recv()
        return record
    except EOFError:
        process.join()
        code = process.exitcode
        died = f"signal {-code}" if code is not None and code < 0 else "it exited"
        error = CrashedError(f"decoder crashed (the worker died: {died}); no output written")
        return _failed(item, seen.digest, error)
    finally:
        receive.close()
        if process.is_alive():
            process.terminate()
        process.join()


def _alone_in_child(item: Input, seen: Seen, settings: Settings, send: Connection) -> None:
    _start_worker(settings)
    send.send(_process_in_worker(item, seen))


def _stop(pool: ProcessPoolExecutor, grace: float = 1.5) -> None:
    """Stop the workers now: cancel queued files, end running ones, kill stragglers."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in processes:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace
    for worker in processes:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()


def run_paths(
    paths: Sequence[Path],
    settings: Settings,
    *,
    jobs: int = 1,
    on_result: Callable[[FileRecord], None] | None = None,
    engine: Engine | None = None,
) -> Summary:
    """Process paths without a manifest (tests, benchmarks, `profiles test`)."""
    work = plan([Input(p, str(p), "") for p in paths])
    return run(work, settings, jobs=jobs, on_result=on_result, total=len(paths), engine=engine)


def worker_count(jobs: int) -> int:
    """`--jobs`, where 0 means one worker per core."""
    return jobs if jobs > 0 else (os.cpu_count() or 1)
