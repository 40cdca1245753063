"""A grid's runs as Ray tasks, each an ordinary `dvc exp run` in its own clone, each brought back to
the user's repository as a DVC experiment.

    target = Target(git_url=repo_root, commit=head, cache_dir=repo_cache, ...)   # or a cluster's remotes
    outcomes = run_grid(runs, target, jobs=2, address=None, threads=[1, 1], log=print)

A task clones the commit under test from `target.git_url` into a temporary folder (never the
user's working tree), runs `dvc exp run -S ...` there and `dvc exp push`es the experiment back to
`target.git_url`. Two ways the outputs travel:
- On this machine (no cluster address): git_url is the user's repository itself and every clone
  uses the user's DVC cache (`dvc cache dir --local`): the experiment's ref lands in the user's
  repo, its outputs in the user's cache, and DVC's run cache is shared, so running the same grid
  again restores finished runs instead of training them again.
- On a cluster: git_url is a git remote every node reaches and outputs travel through the
  repository's default DVC remote: a task `dvc pull`s the baseline's outputs and the run cache,
  `dvc exp push`es its experiment with its outputs and run-cache entries, and the driver
  `dvc exp pull`s each finished experiment into the user's repository.

Nothing lost: Ray runs a task again once if its worker process dies; a task whose `dvc exp run`
is killed by a signal runs it once more itself; a run that fails (bad params, a failing stage) is
reported and the others go on. Ray is imported only here: `commands.grid` without --jobs or
--address never loads it.

The task's code ships to the workers by value (cloudpickle), so cluster nodes need git, and the
locked environment (dvc, torch) on their PATH or beside their Python, not this checkout.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

RAN = re.compile(r"Ran experiment\(s\): (\S+)")
CLONES = "mnistbench-grid-"  # the prefix of each run's temp folder
CACHED = "is cached - skipping run"  # DVC's line for a stage restored from the run cache


class RemoteError(RuntimeError):
    """A worker could not reach the git remote or the DVC remote: every run would fail the same way."""


@dataclasses.dataclass(frozen=True)
class Target:
    git_url: str  # clone from here, push experiments here
    commit: str  # the commit under test
    cache_dir: str | None  # this machine: the user's DVC cache; a cluster: None (the DVC remote)
    author: tuple[str, str]  # git user.name, user.email for the experiments' commits
    env: dict[str, str]  # passed to dvc: DATA_MIRROR and the like


def _die_with_parent() -> None:  # a dvc whose Ray worker was killed stops too, instead of pushing a stray run
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_dvc(command: list[str], cwd: str, env: dict) -> subprocess.CompletedProcess:
    """`dvc exp run` in its own process group, with its stages: when this task is cancelled (the
    grid's Ctrl-C), the whole group is killed, not dvc alone; when this task's worker process is
    killed, dvc dies with it (PR_SET_PDEATHSIG) and so does its stage (mnistbench.entry.run_stage sets
    the same for every stage): no orphan trains on, or pushes a stray experiment."""
    # bash -c execs a single command, so a stage's parent is dvc itself (dash forks and waits)
    env = {**env, "SHELL": shutil.which("bash") or env.get("SHELL", "/bin/sh")}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _tools() -> tuple[str, dict[str, str]]:
    """dvc beside this worker's Python (the locked environment), and a PATH where stages find that Python."""
    bin_dir = os.path.dirname(sys.executable)
    dvc = os.path.join(bin_dir, "dvc")
    return (dvc if os.path.exists(dvc) else "dvc"), {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _error_line(output: str) -> str:
    """The line that says what went wrong: a stage's own `name: error: ...`, else DVC's last ERROR."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if re.match(r"^\w+: error: ", line)]
    theirs = [line for line in lines if line.startswith("ERROR")]
    return (ours or theirs or lines or ["no output"])[-1]


def run_in_clone(target: Target, overrides: list[str], extra: list[str], dvc_args: list[str]) -> dict:
    """One grid run on a Ray worker: clone, `dvc exp run`, `dvc exp push`. Returns its outcome;
    raises RemoteError when the git or DVC remote cannot be reached."""
    dvc, path = _tools()
    env = {**os.environ, **target.env, **path, "DVC_NO_ANALYTICS": "1"}
    sweep_clones()  # a killed worker's clone, left on this node
    workdir = tempfile.mkdtemp(prefix=f"{CLONES}{os.getpid()}-")  # its worker's pid: see sweep_clones
    clone = os.path.join(workdir, "repo")

    def sh(*args: str, remote: str | None = None, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=kw.pop("cwd", clone), env=env, capture_output=True, text=True, **kw)
        if done.returncode != 0:
            detail = _error_line(done.stdout + done.stderr)
            if remote:
                raise RemoteError(f"{remote} from {socket.gethostname()}: {detail}")
            raise RuntimeError(f"{' '.join(args[:3])}: {detail}")
        return done

    started = time.monotonic()
    try:
        sh(
            "git",
            "clone",
            "--quiet",
            "--no-checkout",
            target.git_url,
            clone,
            cwd=workdir,
            remote=f"cannot clone the git remote {target.git_url}",
        )
        sh(
            "git",
            "checkout",
            "--quiet",
            "--detach",
            target.commit,
            remote=f"commit {target.commit[:7]} is not on the git remote {target.git_url}",
        )
        sh("git", "config", "user.name", target.author[0])
        sh("git", "config", "user.email", target.author[1])
        if target.cache_dir:
            sh(dvc, "cache", "dir", "--local", target.cache_dir)
        else:
            sh(dvc, "pull", "--quiet", "--run-cache", remote="cannot pull the baseline's outputs from the DVC remote")
        command = [dvc, "exp", "run", *[a for o in overrides + extra for a in ("-S", o)], *dvc_args]
        for attempt in (1, 2):  # noqa: B007 (the outcome reports how many it took)
            ran = _run_dvc(command, clone, env)
            if ran.returncode >= 0:  # < 0: killed by a signal; once more, from the same clone
                break
        output = ran.stdout + ran.stderr
        name = RAN.search(output)
        if ran.returncode != 0 or not name:
            return {"ok": False, "detail": f"exit {ran.returncode}: {_error_line(output)}", "attempts": attempt}
        push = [
            dvc,
            "exp",
            "push",
            *(["--no-cache"] if target.cache_dir else ["--run-cache"]),
            target.git_url,
            name.group(1),
        ]
        sh(*push, remote="cannot push the experiment to the git or DVC remote")
        return {
            "ok": True,
            "name": name.group(1),
            "restored": output.count(CACHED),
            "attempts": attempt,
            "seconds": round(time.monotonic() - started, 1),
            "node": socket.gethostname(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def sweep_clones() -> None:
    """Remove the clones in this host's temp folder whose Ray worker process is gone: a worker killed
    mid-run (out of memory, Ctrl-C's forced cancel, a test) never reaches its `finally`. A clone's
    name holds its worker's pid; a live worker's, this grid's or another's, is left alone."""
    root = tempfile.gettempdir()
    for entry in os.listdir(root):
        owner = re.fullmatch(re.escape(CLONES) + r"(\d+)-\w+", entry)
        if owner and not _alive(int(owner.group(1))):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_address(address: str) -> None:
    """One line, before Ray tries for a minute, when nothing listens at a cluster's address."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise SystemExit(
            f"grid: error: no Ray cluster answers at {address}: start one with `ray start --head` "
            "(it prints the address), or leave out --address to run on this machine"
        ) from None


def run_grid(
    runs: list[list[str]],
    extras: list[list[str]],
    target: Target,
    jobs: int,
    address: str | None,
    threads: list[int],
    dvc_args: list[str],
    log: Callable[[str], None],
) -> tuple[list[dict | None], bool]:
    """Every run as a Ray task, at most `jobs` at once, each reserving its train.threads CPUs (so
    jobs x threads never exceeds the CPUs Ray offers). Returns the outcomes in run order (None: not
    finished) and whether Ctrl-C cut the grid short; then the runs still going are cancelled."""
    import ray

    started = time.monotonic()
    ray.init(
        address=address,
        num_cpus=None if address else os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not have mnistbench
        cpus = int(ray.cluster_resources().get("CPU", 0))
        log(
            f"grid: Ray {'at ' + address if address else 'on this machine'}: {cpus} CPUs on "
            f"{len(ray.nodes())} node(s), ready in {time.monotonic() - started:.1f} s; up to {jobs} run(s) at once"
        )
        task = ray.remote(max_retries=1)(run_in_clone)
        outcomes: list[dict | None] = [None] * len(runs)
        waiting, running = list(range(len(runs))), {}
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    i = waiting.pop(0)
                    ref = task.options(num_cpus=threads[i]).remote(target, runs[i], extras[i], dvc_args)
                    running[ref] = i
                    log(f"grid: [{i + 1}/{len(runs)}] started: {' '.join(runs[i])}")
                done, _ = ray.wait(list(running), num_returns=1)
                i = running.pop(done[0])
                outcomes[i] = o = _outcome(ray, done[0])
                log(
                    f"grid: [{i + 1}/{len(runs)}] "
                    + (
                        f"{o['name']} in {o['seconds']} s on {o['node']}"
                        + (f", {o['restored']} stage(s) restored from the run cache" if o["restored"] else "")
                        + (" (its dvc exp run was killed: ran it again)" if o["attempts"] > 1 else "")
                        if o["ok"]
                        else f"FAILED ({' '.join(runs[i])}): {o['detail']}"
                    )
                )
        except KeyboardInterrupt:
            log("grid: interrupted: stopping the runs still going (their dvc and stages) ...")
            for ref in running:
                ray.cancel(ref)  # KeyboardInterrupt in the task: _run_dvc kills its process group
            ray.wait(list(running), num_returns=len(running), timeout=30)
            for ref in running:
                ray.cancel(ref, force=True)
            return outcomes, True
        return outcomes, False
    finally:
        ray.shutdown()
        sweep_clones()  # on this host: the clones of workers killed during the grid


def _outcome(ray, ref) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, RemoteError):
            raise e.cause from None
        return {"ok": False, "detail": str(e.cause or e).strip().splitlines()[-1]}
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
        return {
            "ok": False,
            "detail": f"its worker process died, twice ({type(e).__name__}): reported, not retried again",
        }
