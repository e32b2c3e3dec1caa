"""Batch work on a Dask cluster: the same per-file function as on one machine, on many.

`deid anonymize --scheduler tcp://host:8786` connects to a running Dask scheduler;
`--scheduler local:N` starts N worker processes here. Either way the plan, the manifest
and the progress stay with the client (`batch.run`), and this module is only an engine:
it turns the files to do into records as they end. Files go out a few per worker
thread, so a run of a million files never holds a million tasks; a worker that dies has
its files rerun by Dask, and outputs land whole or not at all, so a file run twice is
written once. A file that kills every worker it is given to fails as `decoder crashed`.

Dask is an optional extra, imported only here and only when a scheduler is asked for.
Its own logging is silenced: it would print task keys and, on errors, task arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from deid import __version__, batch, outfolder
from deid.errors import CrashedError, DeidError, ExitCode, UsageError
from deid.output import TEMP_PREFIX
from deid.record import FileRecord, Seen
from deid.settings import Settings

if TYPE_CHECKING:
    from distributed import Client, Future

NEEDS_DASK = "--scheduler needs Dask: pip install 'deid[dask]'"
SCHEMES = ("tcp", "tls")

# Seconds to reach a scheduler, and to wait for its first worker to join.
CONNECT_TIMEOUT = 10.0
WORKER_TIMEOUT = 60.0
# Tasks in flight per worker thread: enough to keep every thread busy between results.
PER_THREAD = 4
# Seconds of work in one task: Dask's cost per task (the scheduler's bookkeeping, a few
# messages) is milliseconds, as much as a tags-only file; tasks of a fraction of a
# second make it small, and a lost worker's task is soon done again.
TASK_SECONDS = 0.25
# How a local cluster's workers run, beside Dask's defaults: the environment of a local
# worker (Dask's MALLOC_TRIM_THRESHOLD_ ends glibc's adaptive mmap threshold, so every
# frame-sized array is mapped and unmapped anew, and its one thread per numeric library
# slowed the text search on a CT slice by a quarter), and no sampling of the work (a
# profiler thread every 10 ms, the system and memory every 100-500 ms), which takes the
# cores the files need. The README gives the same settings for workers started by hand.
WORKER_CONFIG: dict[str, object] = {
    "distributed.nanny.pre-spawn-environ": {},
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}
# Seconds between looks at how many worker threads the cluster has (workers come and go).
RECOUNT = 5.0


@dataclass(frozen=True)
class Scheduler:
    """Where to run: the address of a running scheduler, or a local cluster's size."""

    address: str = ""
    workers: int = 0

    @property
    def local(self) -> bool:
        return not self.address


def parse(text: str, jobs: int) -> Scheduler:
    """`--scheduler` checked before any file: `tcp://HOST:PORT` (or `tls://`), `local:N`,
    or `local` (`jobs` workers). Raises UsageError for anything else, or without Dask."""
    given = text.strip()
    if given == "local" or given.startswith("local:"):
        count = given.partition(":")[2] if ":" in given else str(jobs)
        if not count.isdigit() or int(count) < 1:
            raise UsageError(
                f"--scheduler {text!r}: local:N needs N, a number of worker processes, "
                "of at least 1"
            )
        scheduler = Scheduler(workers=int(count))
    else:
        scheme, sep, rest = given.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or scheme not in SCHEMES or not host or not colon or not port.isdigit():
            raise UsageError(
                f"--scheduler {text!r}: give the address of a Dask scheduler "
                "(tcp://HOST:PORT) or local:N for N worker processes here"
            )
        scheduler = Scheduler(address=given)
    distributed()
    return scheduler


def distributed() -> ModuleType:
    """The `distributed` package, imported now (it takes a second), or a UsageError."""
    try:
        import distributed as module
    except ImportError:
        raise UsageError(NEEDS_DASK) from None
    return module


def open_engine(
    scheduler: Scheduler | None, out_dir: Path, roots: Sequence[Path]
) -> contextlib.AbstractContextManager[DaskEngine | None]:
    """`connect`, or None (the local process pool) when no scheduler is given."""
    return connect(scheduler, out_dir, roots) if scheduler else contextlib.nullcontext()


@contextlib.contextmanager
def connect(scheduler: Scheduler, out_dir: Path, roots: Sequence[Path]) -> Iterator[DaskEngine]:
    """An engine on the cluster, checked before the first file; closed on leaving.

    Raises UsageError when the scheduler cannot be reached, no worker joins it, or a
    worker cannot see the inputs or the output folder, or runs another deid version.
    """
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(start(scheduler))
            ready = stack.enter_context(engine(client, out_dir, roots))
        except KeyboardInterrupt:  # waiting for a scheduler or its workers
            stopped = DeidError("interrupted while connecting to Dask, before the first file")
            stopped.exit_code = ExitCode.INTERRUPTED
            raise stopped from None
        yield ready


@contextlib.contextmanager
def start(scheduler: Scheduler) -> Iterator[Client]:
    """A client of the scheduler, or of a local cluster started for the run, with at
    least one worker; the cluster a local run started is closed on leaving."""
    dask = distributed()
    from dask import config as dask_config

    from deid import clusterwork

    _silence()
    with contextlib.ExitStack() as stack:
        if scheduler.local:
            stack.enter_context(dask_config.set(WORKER_CONFIG))
            # Ctrl-C reaches every process of the terminal's group: the workers started
            # here are born deaf to it (they inherit the ignored signal), and the client
            # alone decides what it stops, as with the local pool
            with _deaf_to_ctrl_c(), _or_fail("cannot start a local Dask cluster"):
                cluster = dask.LocalCluster(
                    n_workers=scheduler.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",  # the settings hold the key: nothing listens outside
                    dashboard_address=None,
                    # its health and metrics pages on a free port, not on a default that
                    # another cluster may hold (Dask warns, on the terminal, when it is)
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.CRITICAL,
                )
            stack.callback(_quietly, cluster.close, timeout=5)
            client = dask.Client(cluster, set_as_default=False)
            stack.callback(_quietly, client.close, timeout=5)
            # and so is a worker the cluster starts again after one died
            client.register_plugin(clusterwork.DeafToCtrlC(), name="deid-deaf-to-ctrl-c")
        else:
            client = _reach(dask, scheduler.address)
            stack.callback(_quietly, client.close, timeout=5)
        if not scheduler.local:
            try:
                client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
            except (TimeoutError, OSError):
                raise UsageError(
                    f"no Dask worker joined the scheduler at {scheduler.address} within "
                    f"{WORKER_TIMEOUT:.0f} s: start workers first"
                ) from None
        yield client


@contextlib.contextmanager
def _or_fail(doing: str) -> Iterator[None]:
    """Dask's own failure as one line (exit 10), not its traceback."""
    try:
        yield
    except Exception as exc:
        raise DeidError(f"{doing} ({type(exc).__name__}: {exc})") from None


@contextlib.contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """SIGINT ignored for a while (in the main thread only, where signals are handled)."""
    try:
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to set, nothing to restore
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _reach(dask: ModuleType, address: str) -> Client:
    """A client of the scheduler at `address`, within `CONNECT_TIMEOUT` seconds.

    Ctrl-C waits for the answer: a client interrupted while it connects is left half
    made, and Dask then spends 20 s closing it, with a traceback.
    """
    try:
        with _deaf_to_ctrl_c():
            client: Client = dask.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = "timed out" if "imed out" in str(exc) or isinstance(exc, TimeoutError) else "failed"
        raise UsageError(
            f"cannot reach the Dask scheduler at {address} ({why} after "
            f"{CONNECT_TIMEOUT:.0f} s): is it running, and is the address right?"
        ) from None
    return client


def _silence() -> None:
    """No line from Dask on the terminal: its logs name task keys and quote arguments."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]
    for name in {"distributed", *names}:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"distributed(\.|$)")


def _quietly(close: Any, **kwargs: Any) -> None:
    """Close a client or cluster; one already gone (or closing badly) is no error."""
    with contextlib.suppress(Exception):
        close(**kwargs)


@contextlib.contextmanager
def engine(client: Client, out_dir: Path, roots: Sequence[Path]) -> Iterator[DaskEngine]:
    """An engine for a run into `out_dir`, once every worker passed the start-up check.

    The probe file the check looks for stays for the run: a worker that joins later
    checks it too. Its name is that of a temporary output, so a run killed before it
    could remove it leaves it to the sweep of unfinished outputs.
    """
    probe = _absolute(out_dir) / f"{TEMP_PREFIX}probe-{secrets.token_hex(6)}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"deid\n")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot write in the output folder ({why})", str(out_dir)) from None
    try:
        check_workers(client, probe, roots)
        yield DaskEngine(client, probe, [str(_absolute(r)) for r in roots])
    finally:
        probe.unlink(missing_ok=True)


def check_workers(client: Client, probe: Path, roots: Sequence[Path]) -> None:
    """Run `clusterwork.check_worker` on every worker; the first one that fails it is a
    UsageError naming the worker and what it could not do."""
    from deid import clusterwork

    answers = client.run(
        clusterwork.check_worker,
        str(probe),
        [str(_absolute(r)) for r in roots],
        __version__,
        on_error="return",
    )
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            problem = (
                f"cannot run deid ({type(answer).__name__}): "
                f"install deid {__version__} on every worker"
            )
        else:
            problem = str(answer)
        if problem:
            raise UsageError(f"Dask worker {address} {problem}")


def _absolute(path: Path) -> Path:
    """The path as every machine must know it: absolute, links left as they are."""
    return Path(os.path.abspath(path))


class DaskEngine:
    """A `batch.Engine` on a Dask client: files submitted as threads free up, records
    yielded as they come back."""

    def __init__(self, client: Client, probe: Path, roots: list[str]) -> None:
        self.client = client
        self.probe = probe
        self.roots = roots  # absolute: what a worker that joins later is checked against

    def __call__(self, todo: list[tuple[batch.Input, Seen]], settings: Settings) -> batch.Records:
        return self._results(todo, settings)

    def _results(self, todo: list[tuple[batch.Input, Seen]], settings: Settings) -> batch.Records:
        from deid import clusterwork

        dask = distributed()
        here = settings.out_dir
        there = _absolute(here)
        token = secrets.token_hex(8)
        plugin = f"deid-run-{token}"
        shipped = dataclasses.replace(settings, out_dir=there)
        self.client.register_plugin(
            clusterwork.RunSettings(token, shipped, str(self.probe), self.roots), name=plugin
        )
        queue = deque(
            (dataclasses.replace(item, path=_absolute(item.path)), seen) for item, seen in todo
        )
        alone: deque[tuple[batch.Input, Seen]] = deque()  # the files of a task that killed
        pending: dict[Future[list[FileRecord]], batch.Work] = {}
        ended = dask.as_completed(loop=self.client.loop)
        first = self._threads()
        threads, counted = max(1, sum(first.values())), time.monotonic()
        pacer = batch.Pacer(TASK_SECONDS)

        def submit() -> None:
            while (queue or alone) and len(pending) < PER_THREAD * threads:
                if alone:
                    task = [alone.popleft()]
                else:
                    size = pacer.size(len(queue), threads)
                    task = [queue.popleft() for _ in range(min(size, len(queue)))]
                future = self.client.submit(clusterwork.process_files, task, token, pure=False)
                pending[future] = task
                ended.add(future)

        try:
            submit()
            for future in ended:
                task = pending.pop(future)
                records = _outcome(dask, future, task)
                if records is None:  # a task of several files killed its workers
                    alone.extend(task)
                    records = []
                for record in records:
                    pacer.ended(record)
                    record.outputs = tuple(_back(Path(p), there, here) for p in record.outputs)
                yield records
                if time.monotonic() - counted > RECOUNT:
                    now = self._threads()
                    threads = max(1, sum(now.values())) if now else threads
                    counted = time.monotonic()
                submit()
        finally:
            if pending:
                _quietly(self.client.cancel, futures=list(pending), force=True)
            _quietly(self.client.unregister_worker_plugin, name=plugin)
            if set(first) - set(self._threads()):
                # a worker died, perhaps halfway through writing a file that another
                # worker then wrote whole: its temporary files are all that is left of it
                outfolder.sweep_partials(there)
                with contextlib.suppress(OSError):
                    self.probe.write_bytes(b"deid\n")  # the sweep took it too

    def _threads(self) -> dict[str, int]:
        """Threads of each worker now; none when the scheduler cannot be asked."""
        try:
            threads: dict[str, int] = self.client.nthreads()  # type: ignore[no-untyped-call]
        except Exception:
            return {}
        return threads


def _outcome(
    dask: ModuleType, future: Future[list[FileRecord]], task: batch.Work
) -> list[FileRecord] | None:
    """The records of an ended task; a task that failed in Dask fails its files. None
    when a task of several files killed every worker given it: its files are then run
    one to a task, to find the one that does.

    The records are fetched now, whatever the future's state says: a result held by a
    worker that died since is computed again, and this waits for it.
    """
    try:
        records: list[FileRecord] = future.result()
    except dask.KilledWorker:
        if len(task) > 1:
            return None
        reason = "decoder crashed (every Dask worker given the file died); no output written"
        return [batch._failed(item, seen.digest, CrashedError(reason)) for item, seen in task]
    except CancelledError:
        error = DeidError("the Dask scheduler dropped the file's task; run again to resume")
    except Exception as exc:  # the per-file function raises none: this is Dask's own
        error = DeidError(f"unexpected {type(exc).__name__} in Dask; no output written")
    else:
        return records
    error.kind = "internal"
    return [batch._failed(item, seen.digest, error) for item, seen in task]


def _back(path: Path, there: Path, here: Path) -> str:
    """An output path as the client names it (the manifest keeps it relative to `here`)."""
    return str(here / path.relative_to(there)) if path.is_relative_to(there) else str(path)
