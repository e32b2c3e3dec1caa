"""What runs on a Dask worker: the run's settings, the start-up check, one file.

This module imports `distributed` (its plugin base class), so only a run with
`--scheduler` loads it; `deid.cluster` is the client side. A worker receives the run's
settings once, by a plugin that Dask also gives to every worker that joins later, rather
than with each file: they hold the whole profile and the key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from distributed.diagnostics.plugin import WorkerPlugin

from deid import __version__, batch, outfolder
from deid.errors import CrashedError, DeidError, UsageError
from deid.record import FileRecord, Seen
from deid.settings import Settings

if TYPE_CHECKING:
    from distributed import Worker

SHARED = "inputs and outputs must be on a filesystem every worker sees, under the same paths"

# Settings of the runs this worker process serves, by run token, set by `RunSettings`;
# and what this worker failed of each run's check when it joined ("" when it passed).
_SETTINGS: dict[str, Settings] = {}
_PROBLEMS: dict[str, str] = {}
# One file at a time in a worker process, whatever its number of threads: the pipeline
# is made for one file per process, as the local pool runs it (library warnings, which
# quote values, are caught process-wide; each model is loaded once per process).
_ONE_AT_A_TIME = threading.Lock()


class RunSettings(WorkerPlugin):
    """Gives a run's settings to each worker, once, when it joins the run or the cluster.

    A worker that joins after the start-up check is checked here, as the others were
    (`check_worker`): if it fails, every file sent to it fails with the reason.
    """

    def __init__(self, token: str, settings: Settings, probe: str, roots: list[str]) -> None:
        self.token = token
        self.settings = settings
        self.probe = probe
        self.roots = roots
        self.version = __version__  # the client's: the plugin is made there

    def setup(self, worker: Worker) -> None:
        _SETTINGS[self.token] = self.settings
        _PROBLEMS[self.token] = check_worker(self.probe, self.roots, self.version)

    def teardown(self, worker: Worker) -> None:
        _SETTINGS.pop(self.token, None)
        _PROBLEMS.pop(self.token, None)


class DeafToCtrlC(WorkerPlugin):
    """Makes a worker of a cluster started for one run ignore Ctrl-C: the terminal sends
    it to every process of the run, and the client alone decides what it stops."""

    def setup(self, worker: Worker) -> None:
        with contextlib.suppress(ValueError):  # only the main thread may set it
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_files(task: batch.Work, token: str) -> list[FileRecord]:
    """The files of one task, in turn (`batch.Pacer` sizes tasks); never raises."""
    return [process_file(item, seen, token) for item, seen in task]


def process_file(item: batch.Input, seen: Seen, token: str) -> FileRecord:
    """One file, as a local worker process runs it; never raises.

    Whatever escapes the pipeline becomes a failed record here, on the worker, so that
    only plain data travels back (a native codec's panic may not even pickle).
    """
    settings = _SETTINGS.get(token)
    if settings is None:
        error = DeidError("this Dask worker never received the run's settings; run again")
        error.kind = "internal"
        return batch._failed(item, seen.digest, error)
    problem = _PROBLEMS.get(token, "")
    if problem:
        return batch._failed(item, seen.digest, UsageError(f"this Dask worker {problem}"))
    try:
        with _ONE_AT_A_TIME:
            return batch._processed(item, seen, settings)
    except Exception as exc:
        error = DeidError(f"unexpected {type(exc).__name__}; no output written", item.name)
        error.kind = "internal"
        return batch._failed(item, seen.digest, error)
    except BaseException as exc:  # a stop or a native panic: no Exception, maybe no pickle
        reason = f"decoder crashed ({type(exc).__name__}); no output written"
        return batch._failed(item, seen.digest, CrashedError(reason))


def check_worker(probe: str, roots: list[str], version: str) -> str:
    """What this worker cannot do of a run ("" when it can do it all), run on every
    worker by the client before the first file.

    The worker must run the client's deid version (the same profile and key give the
    same outputs only with the same code), read every input given on the command line,
    see the probe file the client wrote in the output folder (the same filesystem, not
    a folder of the same name on this machine's own disk), and write there. Inputs are
    named by their number on the command line: their paths may carry patients' names.
    """
    if version != __version__:
        return (
            f"runs deid {__version__}, not {version} as this client does: "
            "install the same deid version on every worker"
        )
    for number, root in enumerate(roots, start=1):
        wanted = os.R_OK | (os.X_OK if os.path.isdir(root) else 0)
        if not os.path.exists(root) or not os.access(root, wanted):
            return f"cannot read input {number} of the {len(roots)} given; {SHARED}"
    if not os.path.isfile(probe):
        return (
            f"cannot see the output folder (a file the client wrote there is not there); {SHARED}"
        )
    try:
        outfolder.probe_writable(Path(probe).parent)
    except OSError as exc:
        return f"cannot write in the output folder ({exc.strerror or type(exc).__name__}); {SHARED}"
    return ""
