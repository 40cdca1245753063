"""Entry-point wrappers for stages and commands: a user's mistake becomes one line on stderr, not a traceback.

    run_stage("train", main)        # stages/*.py
    run_command("sweep", main)      # python -m mnistbench.<command>

Under `dvc repro` and `dvc exp run`, DVC deletes a stage's outputs before it runs the stage, so a
stage that fails or is interrupted there also says how to bring the previous results back.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Callable

from mnistbench.params import ParamsError

# The errors a user can cause, by the module that defines them. They are looked up when an error
# arrives, not imported here: importing data or files would load torch (2 s) into `validate`,
# which runs before every changed pipeline, and a module never imported cannot have raised.
USER_ERRORS = {"mnistbench.data": "DataError", "mnistbench.files": "FileFormatError",
               "mnistbench.replicates": "WorkerError"}

# Brings back the last committed results: the lock and the uncached metrics and plots from git,
# then the cached outputs (models/, data/, run records, DVCLive's history) that the lock names, from
# DVC's cache. --force: an interrupted stage leaves half-written outputs that are in no cache, and
# DVC refuses to replace unsaved files without it. params.yaml is left as it is.
RESTORE = "git checkout HEAD -- dvc.lock metrics plots dvclive && dvc checkout --force"


def _user_errors() -> tuple[type[Exception], ...]:
    loaded = (getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules)
    return (ParamsError, *loaded)


def die_with_parent() -> None:
    """Under a grid's Ray task (MNISTBENCH_DIE_WITH_PARENT, mnistbench/ray_grid.py): end when the
    `dvc` that started this stage ends, so a cancelled or killed run leaves no stage training on."""
    if os.environ.get("MNISTBENCH_DIE_WITH_PARENT") and sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent was already gone
            os._exit(1)


def run_stage(name: str, main: Callable[[], None], outputs_kept: bool = False) -> None:
    """Run a stage's main() as the whole process, and end the process when it returns.

    outputs_kept: the stage's outputs are `persist: true` in dvc.yaml, so DVC never deletes them.
    """
    die_with_parent()
    try:
        run_command(name, main)
    except BaseException as e:
        failed = not isinstance(e, SystemExit) or e.code not in (0, None)
        if failed and os.environ.get("DVC_STAGE") and not outputs_kept:  # DVC sets it for each stage it runs
            print(f"{name}: DVC deleted this stage's previous outputs before running it; "
                  f"`{RESTORE}` brings back the last committed results", file=sys.stderr)
        raise
    # Every output is complete on disk by now (files.write_bytes: fsync, then rename). Skip the
    # interpreter's teardown, which with torch loaded takes 0.6 s of each stage's run here, and
    # 1.0 s with torchvision (`python -c "import torch"`: 2.0 s; with os._exit(0): 1.4 s).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_command(name: str, main: Callable[[], None]) -> None:
    """Run main(); what a user can cause ends it with one line on stderr: bad params.yaml, a missing
    or malformed file (exit 1), a git or dvc command that failed, e.g. outside a clone of this
    repository (exit 1), Ctrl-C (exit 130). argparse's own errors exit 2 as usual."""
    try:
        main()
    except _user_errors() as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted; outputs already written are complete, the rest were not written",
              file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:  # disk full, read-only folder, permissions: the user's to fix, not our bug
        print(f"{name}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None
    except (MemoryError, RuntimeError) as e:  # a model or batch too large for this machine: torch says how much
        asked = out_of_memory(e)
        if asked is None:
            raise
        print(f"{name}: error: out of memory{asked}; a smaller model (model.hidden, model.channels) "
              f"or batch (train.batch_size, evaluate.batch_size) needs less", file=sys.stderr)
        raise SystemExit(1) from None
    except subprocess.CalledProcessError as e:  # git or dvc refused: outside a repository, no commit yet...
        said = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        said = " ".join(said.split())[-300:]
        print(f"{name}: error: `{' '.join(map(str, e.cmd))}` exited {e.returncode}" + (f": {said}" if said else ""),
              file=sys.stderr)
        raise SystemExit(1) from None


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
