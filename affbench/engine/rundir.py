"""Run directories: making a new one, `reports/latest`, the lock, and resuming.

Two runs never share a directory (mkdir is exclusive, and the lock refuses a second writer);
a resumed run gets back the sweep it was started with from run.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from affbench.engine.sweep import Sweep
from affbench.errors import UsageError
from affbench.store import results

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
DEFAULT_ROOT = Path("reports")


@dataclass
class RunOptions:
    sweep: Sweep
    preset: str = "default"
    out: Path | None = None
    resume: Path | None = None
    isolate_threads: bool = True
    report: bool = True
    progress: bool = True
    #: rounds after the first in fresh worker processes (affbench/engine/worker.py); False: all in this one
    workers: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def output_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (created as) a directory to write into, or None when it can.

    Checks only; creates nothing. Creating can still fail (a filesystem that refuses it, a
    superuser's os.access that says yes): callers also catch OSError when they create.
    """
    path = Path(path)
    try:
        if path.exists():
            if not path.is_dir():
                return "exists and is a file, not a directory" if path.is_file() else "exists and is not a directory"
            if not os.access(path, os.W_OK | os.X_OK):
                return "directory is not writable"
            return None
        if path.is_symlink():
            return "is a broken symbolic link"
        for parent in path.absolute().parents:  # the nearest ancestor that exists: where mkdir starts
            if parent.exists():
                if not parent.is_dir():
                    return f"cannot be created: {parent} is a file, not a directory"
                if not os.access(parent, os.W_OK | os.X_OK):
                    return f"cannot be created: {parent} is not writable"
                return None
    except OSError as exc:  # e.g. a parent without search permission
        return f"cannot be checked ({exc.strerror})"
    return None


def make_output_dir(option: str, path: Path, hint: str = "") -> None:
    """Create ``path`` (and its parents) or raise UsageError naming ``option`` and the path."""
    where = f"{option} {path}" if option else str(path)
    if (problem := output_dir_problem(path)) is not None:
        raise UsageError(f"{where}: {problem}{hint}")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{where}: cannot create the directory ({exc.strerror}){hint}") from None


def new_run_dir(root: Path, preset: str) -> Path:
    """A fresh directory; mkdir fails if it exists, so two runs never share one."""
    make_output_dir("", root, "; give the run directory with --out")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1, 1000):
        d = root / (f"{stamp}-{preset}" + (f"-{n}" if n > 1 else ""))
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"{d}: cannot create the run directory ({exc.strerror}); "
                             "give the run directory with --out") from None
    raise UsageError(f"could not create a new run directory under {root}")


def point_latest(run_dir: Path) -> None:
    """<root>/latest -> run_dir, replaced atomically."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:
        pass  # a filesystem without symlinks: the run itself is unaffected


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    fh = open(run_dir / LOCK_FILE, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UsageError(f"{run_dir}: another affbench run is writing this directory") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def prepare(options: RunOptions) -> tuple[Path, RunOptions]:
    """The run directory (new, or the one to resume) and the options to run it with."""
    if options.resume is not None:
        d = Path(options.resume).resolve()  # reports/latest is a link: work on what it points at
        meta = d / RUN_FILE
        if not meta.exists():
            raise UsageError(f"--resume: {d} is not an affbench run directory (no {RUN_FILE})")
        try:
            saved = json.loads(meta.read_text())
            sweep = Sweep.from_dict(saved["sweep"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--resume: {meta}: unreadable ({exc})") from None
        csv_path = d / results.RESULTS_FILE
        if csv_path.exists() and b"\n" not in csv_path.read_bytes()[:65536]:
            csv_path.unlink()  # killed before its header was complete: no case had finished
        if csv_path.exists():
            try:
                results.read_rows(d)
            except results.ResultsError as exc:
                raise UsageError(f"--resume: {exc}") from None
        return d, RunOptions(sweep=sweep, preset=saved.get("preset", "?"), out=d, resume=d,
                             isolate_threads=saved.get("isolate_threads", True), report=options.report,
                             progress=options.progress, workers=options.workers, command=options.command)
    if options.out is not None:
        d = Path(options.out)
        if d.is_dir():
            try:
                not_empty = any(d.iterdir())
            except OSError as exc:
                raise UsageError(f"--out {d}: cannot read the directory ({exc.strerror})") from None
            if not_empty:
                raise UsageError(f"--out {d}: exists and is not empty (results are never overwritten; "
                                 "use --resume to complete it)")
        make_output_dir("--out", d)  # a file, an uncreatable path: refused here, before anything is timed
    else:
        d = new_run_dir(DEFAULT_ROOT, options.preset)
    try:
        (d / RUN_FILE).write_text(json.dumps({"sweep": options.sweep.to_dict(), "preset": options.preset,
                                              "isolate_threads": options.isolate_threads}, indent=2) + "\n")
    except OSError as exc:
        where = f"--out {d}" if options.out is not None else str(d)
        raise UsageError(f"{where}: cannot write {RUN_FILE} ({exc.strerror})") from None
    return d, options
