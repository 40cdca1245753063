"""Runs of DVC as Ray tasks, each in its own clone, each brought back to the user's repository: a
grid's runs as DVC experiments (commands/grid.py), the benchmark's cells as run-cache entries of
their stages (commands/benchmark.py).

    target = target_for("grid", address=None, git_remote="origin")    # this machine, or a cluster's remotes
    jobs = [Job("train.lr=0.1", "experiment", ("train.lr=0.1",), ("replicates.jobs=1",))]
    outcomes, interrupted = run_grid(jobs, target, at_once=2, address=None, log=print, prog="grid")

A task clones the commit under test from `target.git_url` into a temporary folder (never the
user's working tree) and runs its job there: an experiment (`dvc exp run -S ...`, then `dvc exp
push` back to `target.git_url`) or a stage (`dvc repro STAGE`, its outputs kept by DVC's run
cache). Two ways the outputs travel:
- On this machine (no cluster address): git_url is the user's repository itself and every clone
  uses the user's DVC cache (`dvc cache dir --local`): an experiment's ref lands in the user's
  repo, every output in the user's cache, and DVC's run cache is shared, so running the same jobs
  again restores finished runs instead of training them again.
- On a cluster: git_url is a git remote every node reaches and outputs travel through the
  repository's default DVC remote: a task pulls the baseline's outputs and the run cache, then
  pushes its experiment or its stage's outputs with their run-cache entries; the driver pulls
  them into the user's repository (`dvc exp pull`, `dvc repro --pull`).

Nothing lost: Ray runs a task again once if its worker process dies; a task whose dvc is killed
by a signal runs it once more itself; a run that fails (bad params, a failing stage) is reported
and the others go on. Ray is imported only in run_grid: the commands without --jobs or --address
never load it.

The task's code ships to the workers by value (cloudpickle), so cluster nodes need git, and the
locked environment (dvc, torch) on their PATH or beside their Python, not this checkout.
"""

from __future__ import annotations

import dataclasses
import fnmatch
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
RUNNING = re.compile(r"Running stage '([^']+)'")


class RemoteError(RuntimeError):
    """A worker could not reach the git remote or the DVC remote: every run would fail the same way."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One task's work in its clone."""

    label: str  # what the log and the report call it: a grid's -S values, a benchmark's stage
    kind: str  # "experiment": `dvc exp run -S ARGS TARGETS`; "stage": `dvc repro TARGETS`
    args: tuple[str, ...] = ()  # an experiment's -S overrides, as the user gave them
    extra: tuple[str, ...] = ()  # an experiment's -S the grid adds (replicates.jobs=1)
    targets: tuple[str, ...] = ()  # the stages to run (default: dvc.yaml's whole pipeline)
    edits: tuple[tuple[str, str, object], ...] = ()  # (file, key, value) set in the clone before a stage runs
    cpus: int = 1  # the CPUs Ray reserves for it
    gpus: int = 0  # the GPUs (train.device: cuda): such a task waits for a node with a free one


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
    """dvc in its own process group, with its stages: when this task is cancelled (the driver's
    Ctrl-C), the whole group is killed, not dvc alone; when this task's worker process is
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


def dvc_executable() -> str:
    """dvc beside this Python (the locked environment), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "dvc")
    return beside if os.path.exists(beside) else "dvc"


def _tools() -> tuple[str, dict[str, str]]:
    """dvc beside this worker's Python (the locked environment), and a PATH where stages find that Python."""
    return dvc_executable(), {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def add_arguments(parser, what: str, in_turn: str, git_remote: str) -> None:
    """--jobs, --address and --git-remote, as every command that runs its `what` on Ray takes them."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help=f"{what} at once, as Ray tasks in their own clones (default 1: {in_turn})",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        metavar="HOST:PORT",
        help="a running Ray cluster (`ray start --head` prints it; default $RAY_ADDRESS); "
        "outputs then travel through --git-remote and the default DVC remote",
    )
    parser.add_argument(
        "--git-remote",
        default="origin",
        metavar="NAME",
        help=f"with --address: the git remote every node {git_remote} (default origin)",
    )


def _error_line(output: str) -> str:
    """The line that says what went wrong: a stage's own `name: error: ...`, else DVC's last ERROR."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if re.match(r"^\w+: error: ", line)]
    theirs = [line for line in lines if line.startswith("ERROR")]
    return (ours or theirs or lines or ["no output"])[-1]


def run_in_clone(target: Target, job: Job) -> dict:
    """One job on a Ray worker: clone, run, push. Returns its outcome; raises RemoteError when the
    git or DVC remote cannot be reached."""
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
        elif job.kind == "experiment":
            sh(dvc, "pull", "--quiet", "--run-cache", remote="cannot pull the baseline's outputs from the DVC remote")
        for file, key, value in job.edits:
            _set_value(os.path.join(clone, file), key, value)
        if job.kind == "stage":
            _cache_uncached(clone, job.targets)
        if job.kind == "experiment":
            command = [dvc, "exp", "run", *[a for o in job.args + job.extra for a in ("-S", o)], *job.targets]
        else:  # on a cluster, --pull: the run cache and the outputs of unchanged stages from the DVC remote
            command = [dvc, "repro", *([] if target.cache_dir else ["--pull"]), *job.targets]
        for attempt in (1, 2):  # noqa: B007 (the outcome reports how many it took)
            ran = _run_dvc(command, clone, env)
            if ran.returncode >= 0:  # < 0: killed by a signal; once more, from the same clone
                break
        output = ran.stdout + ran.stderr
        name = RAN.search(output) if job.kind == "experiment" else None
        if ran.returncode != 0 or (job.kind == "experiment" and not name):
            return {"ok": False, "detail": f"exit {ran.returncode}: {_error_line(output)}", "attempts": attempt}
        if job.kind == "experiment":
            push = [dvc, "exp", "push", *(["--no-cache"] if target.cache_dir else ["--run-cache"]), target.git_url]
            sh(*push, name.group(1), remote="cannot push the experiment to the git or DVC remote")
        elif not target.cache_dir:  # the stages' outputs and their run-cache entries, for the driver's --pull
            sh(dvc, "push", "--quiet", "--run-cache", *job.targets, remote="cannot push the outputs to the DVC remote")
        return {
            "ok": True,
            "name": name.group(1) if name else job.label,
            "restored": output.count(CACHED),  # stages DVC's run cache restored instead of running them
            "ran": RUNNING.findall(output),  # stages that ran
            "attempts": attempt,
            "seconds": round(time.monotonic() - started, 1),
            "node": socket.gethostname(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cache_uncached(clone: str, targets: tuple[str, ...]) -> None:
    """The targets' `cache: false` outputs (metrics, tables, the benchmark's predictions) cached in
    this clone's dvc.yaml, so that the clone's run leaves a run-cache entry the driver restores.
    DVC saves no entry at all for a stage with an uncached output other than a metric or a plot
    (`Stage.run`: `run_cache=not no_cache_outs`), and `dvc push` skips uncached outputs, so a
    driver's `dvc repro` (`--pull` on a cluster) would run the stage again. The flag is no part of
    the run cache's key or entry (its command, dependencies, params and output paths): the entry
    restores the stage as the repository defines it. Checked: the file means the same but for the flags."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 1 << 20  # no folding of long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    for target in targets:
        file, _, stage = target.rpartition(":")
        path = os.path.join(clone, file or "dvc.yaml")
        with open(path) as f:
            text = f.read()
        tree = yaml.load(text)
        definition = tree["stages"][stage.split("@")[0]]
        base = os.path.join(os.path.dirname(file), definition.get("wdir", "."))
        patterns = []  # each flipped output's path, its ${...} read as a wildcard
        for kind in ("outs", "metrics", "plots"):
            for entry in definition.get(kind) or []:
                for out, options in entry.items() if isinstance(entry, dict) else []:
                    if isinstance(options, dict) and options.get("cache") is False:
                        options["cache"] = True
                        patterns.append(re.sub(r"\$\{[^}]*\}", "*", os.path.normpath(os.path.join(base, out))))
        with open(path, "w") as f:
            yaml.dump(tree, f)
        with open(path) as f:
            edited = f.read()
        if YAML(typ="safe").load(edited.replace("cache: true", "cache: false")) != YAML(typ="safe").load(
            text.replace("cache: true", "cache: false")
        ):
            raise RuntimeError(f"{file}: rewriting it to cache {stage}'s outputs changed what it says")
        # DVC refuses a cached output that git tracks: out of this clone's index (its files stay)
        tracked = subprocess.run(["git", "ls-files"], cwd=clone, capture_output=True, text=True, check=True)
        matched = [f for f in tracked.stdout.splitlines() if any(fnmatch.fnmatchcase(f, p) for p in patterns)]
        if matched:
            subprocess.run(["git", "rm", "--cached", "--quiet", "--", *matched], cwd=clone, check=True)


def _set_value(path: str, key: str, value: object) -> None:
    """A top-level key of a YAML file set in place, its comments and order kept (ruamel: DVC's own YAML)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    with open(path) as f:
        tree = yaml.load(f)
    tree[key] = value
    with open(path, "w") as f:
        yaml.dump(tree, f)


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


def check_address(address: str, prog: str = "grid") -> None:
    """One line, before Ray tries for a minute, when nothing listens at a cluster's address."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise SystemExit(
            f"{prog}: error: no Ray cluster answers at {address}: start one with `ray start --head` "
            "(it prints the address), or leave out --address to run on this machine"
        ) from None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def target_for(prog: str, address: str | None, git_remote: str) -> Target:
    """Where the tasks clone from and how their outputs come back, for the repository in the
    current directory at HEAD; on a cluster, after checking (one line each, before anything runs)
    that the Ray cluster answers, that the git remote is reachable and holds HEAD, and that the
    default DVC remote holds HEAD's outputs."""
    from mnistbench import mirrors

    head = _git("rev-parse", "HEAD")
    author = tuple(
        subprocess.run(["git", "config", key], capture_output=True, text=True).stdout.strip() or default
        for key, default in (("user.name", f"mnistbench {prog}"), ("user.email", f"{prog}@localhost"))
    )
    env = {k: mirrors.absolute(v) for k, v in os.environ.items() if k == "DATA_MIRROR"}  # the clones are elsewhere
    if not address:
        cache = subprocess.run(["dvc", "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
        return Target(os.path.abspath("."), head, os.path.abspath(cache), author, env)
    check_address(address, prog)
    url = subprocess.run(["git", "remote", "get-url", git_remote], capture_output=True, text=True)
    if url.returncode != 0:
        raise SystemExit(
            f"{prog}: error: no git remote {git_remote!r}: the cluster's nodes clone from one "
            "every node reaches: `git remote add origin URL` and `git push`, or name it with --git-remote"
        )
    url = url.stdout.strip()
    try:
        reached = subprocess.run(
            ["git", "ls-remote", "--exit-code", url, "HEAD"], capture_output=True, timeout=60
        ).returncode in (0, 2)
    except subprocess.TimeoutExpired:
        reached = False
    if not reached:
        raise SystemExit(f"{prog}: error: cannot reach the git remote {git_remote} ({url}): fix the URL or the access")
    if subprocess.run(["git", "fetch", "--quiet", git_remote], capture_output=True).returncode != 0 or not _git(
        "branch", "-r", "--contains", head, "--list", f"{git_remote}/*"
    ):
        raise SystemExit(
            f"{prog}: error: commit {head[:7]} is not on the git remote {git_remote}: "
            "`git push` it first, the nodes clone it from there"
        )
    status = subprocess.run(["dvc", "status", "--cloud", "--quiet"], capture_output=True, text=True)
    if status.returncode != 0:
        detail = (status.stderr.strip().splitlines() or ["HEAD's outputs are not all on it"])[-1]
        raise SystemExit(
            f"{prog}: error: the default DVC remote: {detail.removeprefix('ERROR: ')}; "
            "the nodes pull HEAD's outputs from it: `dvc remote add -d ...` and `dvc push` first"
        )
    return Target(url, head, None, author, env)


def run_grid(
    jobs: list[Job],
    target: Target,
    at_once: int,
    address: str | None,
    log: Callable[[str], None],
    prog: str = "grid",
) -> tuple[list[dict | None], bool]:
    """Every job as a Ray task, at most `at_once` at a time, each reserving its CPUs and GPUs (so
    the tasks never ask for more than Ray offers; one line if Ray has no GPU for a cuda run).
    Returns the outcomes in job order (None: not finished) and whether Ctrl-C cut it short; then
    the tasks still going are cancelled."""
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
            f"{prog}: Ray {'at ' + address if address else 'on this machine'}: {cpus} CPUs on "
            f"{len(ray.nodes())} node(s), ready in {time.monotonic() - started:.1f} s; up to {at_once} run(s) at once"
        )
        gpus, needs = int(ray.cluster_resources().get("GPU", 0)), max(job.gpus for job in jobs)
        if needs > gpus:  # Ray would wait for one forever
            raise SystemExit(
                f"{prog}: error: train.device is cuda, so each run needs {needs} GPU, and Ray "
                f"{'at ' + address if address else 'on this machine'} has {gpus}: use a cluster with GPUs, "
                "or train.device: auto or cpu"
            )
        task = ray.remote(max_retries=1)(run_in_clone)
        outcomes: list[dict | None] = [None] * len(jobs)
        waiting, running = list(range(len(jobs))), {}
        try:
            while waiting or running:
                while waiting and len(running) < at_once:
                    i = waiting.pop(0)
                    ref = task.options(num_cpus=jobs[i].cpus, num_gpus=jobs[i].gpus).remote(target, jobs[i])
                    running[ref] = i
                    log(f"{prog}: [{i + 1}/{len(jobs)}] started: {jobs[i].label}")
                done, _ = ray.wait(list(running), num_returns=1)
                i = running.pop(done[0])
                outcomes[i] = o = _outcome(ray, done[0])
                log(f"{prog}: [{i + 1}/{len(jobs)}] {_done(jobs[i], o)}")
        except KeyboardInterrupt:
            log(f"{prog}: interrupted: stopping the runs still going (their dvc and stages) ...")
            for ref in running:
                ray.cancel(ref)  # KeyboardInterrupt in the task: _run_dvc kills its process group
            _, stuck = ray.wait(list(running), num_returns=len(running), timeout=30)
            for ref in stuck:  # only these: force-cancelling a task that has ended can abort Ray's core worker
                ray.cancel(ref, force=True)  # ("Tried to complete task that was not pending", in CI)
            return outcomes, True
        return outcomes, False
    finally:
        ray.shutdown()
        sweep_clones()  # on this host: the clones of workers killed during the run


def _done(job: Job, o: dict) -> str:
    """A finished task, in a line: where and how long, and what DVC restored instead of running."""
    if not o["ok"]:
        return f"FAILED ({job.label}): {o['detail']}"
    again = " (its dvc was killed: ran it again)" if o["attempts"] > 1 else ""
    if job.kind == "stage":
        how = "ran" if any(t in o["ran"] for t in job.targets) else "restored from the run cache"
        return f"{o['name']} in {o['seconds']} s on {o['node']}: {how}{again}"
    restored = f", {o['restored']} stage(s) restored from the run cache" if o["restored"] else ""
    return f"{o['name']} in {o['seconds']} s on {o['node']}{restored}{again}"


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
