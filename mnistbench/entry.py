"""How a stage or a command runs as a process: a user's mistake or a fault becomes one line on
stderr, not a traceback, and no process it started outlives it.

    run_stage("train", main)        # stages/*.py
    run_command("grid", main)       # the commands (commands/) and the lab's (lab/)

Under `dvc repro` and `dvc exp run`, DVC deletes a stage's outputs before it runs the stage, so a
stage that fails or is interrupted there also says how to bring the previous results back.
SIGTERM (what `timeout`, CI runners and systemd send) is handled as Ctrl-C is: the same line,
exit 143 instead of 130.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The errors a user can cause, by the module that defines them. They are looked up when an error
# arrives, not imported here: this module imports nothing but the standard library, so a stage
# handles signals from its first milliseconds (run_stage), before its own imports load torch; and
# a module never imported cannot have raised.
USER_ERRORS = {
    "mnistbench.params": "ParamsError",
    "mnistbench.data": "DataError",
    "mnistbench.files": "FileFormatError",
    "mnistbench.replicates": "WorkerError",
    "mnistbench.benchmark": "CellError",
}

# What to do about an output the OS refused to write, by errno.
DISK_ADVICE = {
    errno.ENOSPC: "free space and rerun",
    errno.EDQUOT: "free space (or raise the quota) and rerun",
    errno.EROFS: "the file system is read-only: remount it read-write, or run where the outputs can be written",
    errno.EACCES: "make the folder writable for this user, then rerun",
    errno.EPERM: "make the folder writable for this user, then rerun",
    errno.EFBIG: "a file-size limit is set (ulimit -f): raise it, then rerun",
}

# Brings back the last committed results: the lock and the uncached metrics and plots from git,
# then the cached outputs (models/, data/, run records, DVCLive's history) that the lock names, from
# DVC's cache. --force: an interrupted stage leaves half-written outputs that are in no cache, and
# DVC refuses to replace unsaved files without it. params.yaml is left as it is.
RESTORE = "git checkout HEAD -- dvc.lock metrics plots dvclive && dvc checkout --force"
# The same for the benchmark's pipeline, in a folder of its own: its lock and results (each cell's
# predictions included) from git, its cached outputs (the prepared data) from DVC's cache.
RESTORES = {
    "benchmark": "git checkout HEAD -- benchmark/dvc.lock benchmark/metrics benchmark/predictions benchmark/plots "
    "benchmark/results.md benchmark/comparisons.json && dvc checkout --force benchmark/dvc.yaml",
}


def restore_command(stage: str) -> str:
    """What brings back the last committed results of the pipeline the stage belongs to; `stage` as
    DVC names it to the stage in DVC_STAGE: `train`, or `benchmark/dvc.yaml:cell@mlp-mnist`."""
    folder = Path(stage.rpartition(":")[0]).parent.as_posix() if ":" in stage else "."
    return RESTORES.get(folder, RESTORE)


def _user_errors() -> tuple[type[Exception], ...]:
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules)


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread, like KeyboardInterrupt for SIGINT."""


def _terminated(signum, frame) -> None:
    raise Terminated


def die_with(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have this process receive `sig` when the process `parent` ends, however it ends (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing): no process of a stage outlives what started it. `parent`
    is the pid the caller passed down, so a parent already gone ends this one now."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, sig)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "ash", "busybox"}


def _parent_and_command(pid: int) -> tuple[int, list[str]] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError):
        return None
    return int(stat[1]), argv


def launcher() -> int | None:
    """The process that ran this one through a shell that stayed in between, or None. DVC runs a
    stage's command as `$SHELL -c '<cmd>'` (/bin/sh where SHELL is unset: cron, systemd, a
    container, many CI runners); bash and zsh exec the command, but dash, Debian's and Ubuntu's
    /bin/sh, forks it and waits, so the stage's parent is the shell, which lives on when dvc ends."""
    shell = _parent_and_command(os.getppid())
    if shell is None or Path(shell[1][0]).name not in SHELLS or "-c" not in shell[1]:
        return None
    return shell[0]


def when_ends(pid: int, then: Callable[[], None]) -> None:
    """Call `then` (in a daemon thread) when the process `pid` ends, or now if it has already ended:
    a pidfd where Linux has one (5.3 and later), else a check every 0.2 s."""
    import select
    import threading

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return then()
    except (AttributeError, OSError):
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while Path(f"/proc/{pid}").exists():
                time.sleep(0.2)
        then()

    threading.Thread(target=wait, name=f"when {pid} ends", daemon=True).start()


def _restore_hint(name: str, outputs_kept: bool) -> None:
    if (stage := os.environ.get("DVC_STAGE")) and not outputs_kept:  # DVC sets it for each stage it runs
        print(
            f"{name}: DVC deleted this stage's previous outputs before running it; "
            f"`{restore_command(stage)}` brings back the last committed results",
            file=sys.stderr,
        )


def begin_stage(name: str, outputs_kept: bool = False) -> None:
    """Make this process a stage from its first milliseconds, before its imports load torch
    (stages/__init__.py calls it as `python -m stages.<name>` starts): it gets SIGTERM when the
    process that started it (dvc) ends, so `kill <dvc>` or a CI timeout stops it too instead of
    leaving it training on its own (and when dvc ends, where a shell stands between: `launcher`);
    and Ctrl-C or SIGTERM before run_stage takes over ends it with one line (nothing was written
    yet) rather than a traceback or a silent death."""
    die_with(os.getppid(), signal.SIGTERM)
    if sys.platform == "linux" and (dvc := launcher()):  # dvc, with a shell (dash) in between
        when_ends(dvc, lambda: os.kill(os.getpid(), signal.SIGTERM))

    def early(signum, frame) -> None:
        what = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
        print(f"{name}: {what} while starting; it wrote nothing", file=sys.stderr)
        _restore_hint(name, outputs_kept)
        sys.stderr.flush()
        os._exit(130 if signum == signal.SIGINT else 143)

    signal.signal(signal.SIGINT, early)
    signal.signal(signal.SIGTERM, early)


def run_stage(name: str, main: Callable[[], None], outputs_kept: bool = False) -> None:
    """Run a stage's main() as the whole process, and end the process when it returns.

    outputs_kept: the stage's outputs are `persist: true` in dvc.yaml, so DVC never deletes them.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, from here on
    signal.signal(signal.SIGTERM, _terminated)
    try:
        run_command(name, main)
    except BaseException as e:
        if not isinstance(e, SystemExit) or e.code not in (0, None):
            _restore_hint(name, outputs_kept)
        raise
    # Every output is complete on disk by now (files.write_bytes: fsync, then rename). Skip the
    # interpreter's teardown, which with torch loaded costs a large part of a short stage's run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_command(name: str, main: Callable[[], None]) -> None:
    """Run main(); what a user can cause ends it with one line on stderr: bad params.yaml, a missing
    or malformed file (exit 1), an output the OS refused to write (exit 1), a git or dvc command
    that failed, e.g. outside a clone of this repository (exit 1), Ctrl-C (exit 130), SIGTERM
    (exit 143). argparse's own errors exit 2 as usual."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, _terminated):  # not a caller's own handler
        signal.signal(signal.SIGTERM, _terminated)
    try:
        main()
    except _user_errors() as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except (KeyboardInterrupt, Terminated) as e:
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"{name}: {what}; outputs already written are complete, the rest were not written", file=sys.stderr)
        raise SystemExit(130 if isinstance(e, KeyboardInterrupt) else 143) from None
    except OSError as e:  # disk full, read-only folder, permissions: the user's to fix, not our bug
        print(f"{name}: error: {os_error(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    except (MemoryError, RuntimeError) as e:  # a model or batch too large for this machine: torch says how much
        asked = out_of_memory(e)
        if asked is None:
            raise
        print(
            f"{name}: error: out of memory{asked}; a smaller model (the widths in model.<arch>) "
            f"or batch (train.batch_size, evaluate.batch_size) needs less",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    except subprocess.CalledProcessError as e:  # git or dvc refused: outside a repository, no commit yet...
        said = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        said = " ".join(said.split())[-300:]
        print(
            f"{name}: error: `{' '.join(map(str, e.cmd))}` exited {e.returncode}" + (f": {said}" if said else ""),
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def os_error(e: OSError) -> str:
    """One line for an OSError: `cannot write models/model.pt: no space left on device; free space
    and rerun` for an output refused (files.write_bytes names the output, not its temp file)."""
    reason = (e.strerror or str(e)).lower()
    written = type(e).__name__ == "WriteError" or e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
    if not e.filename:
        return reason
    if not written:
        return f"{e.filename}: {reason}"
    advice = DISK_ADVICE.get(e.errno)
    return f"cannot write {e.filename}: {reason}" + (f"; {advice}" if advice else "")


def out_of_memory(e: BaseException) -> str | None:
    """For an allocation that failed (Python's MemoryError, torch's CPU allocator or CUDA), what it
    asked for, e.g. ' (3,136.0 GB asked)', or '' where it did not say; None for any other error."""
    said = str(e)
    if not (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in said):
        return None
    asked = re.search(r"ried to allocate (\d+) bytes|ried to allocate ([\d.]+ [KMGT]?i?B)", said)
    if not asked:
        return ""
    return f" ({int(asked[1]) / 1e9:,.1f} GB asked)" if asked[1] else f" ({asked[2]} asked)"
