"""A grid of experiments, each run by `dvc exp run`: in turn in the workspace, or as Ray tasks.

    mnistbench grid -S 'train.lr=0.0003,0.001,0.003'
    mnistbench grid -S 'model.arch=mlp,cnn' -S 'model.cnn.channels=[16,32],[32,64]'
    mnistbench grid --jobs 2 -S 'train.seed=1,2,3,4'      # Ray on this machine, 2 at once
    mnistbench grid --jobs 8 --address HEAD_IP:6379 -S ...  # a Ray cluster (docs/experiments.md)
    mnistbench grid --dry-run -S ...       # print the commands only

Every combination of the values runs as its own `dvc exp run -S ...`; every -S key and value is
checked against params.yaml's rules before anything runs.

In turn (the default, --jobs 1 with no --address): in the workspace, never two at once (DVC's
queue with several workers has races: dvc#10673). Each finished experiment is committed by DVC to
its own git ref before the next starts, so a crash or Ctrl-C loses at most the one running; rerun
the same grid and DVC's run cache restores the finished ones in seconds. A failed experiment is
reported and the grid goes on. Afterwards the workspace is put back to HEAD (params.yaml,
dvc.lock, metrics/, plots/, dvclive/ and the DVC outputs), which is why the grid refuses to start
while those have uncommitted changes, and why a second grid refuses while one runs in turn.

With --jobs N > 1 or --address: Ray tasks, each in its own clone of HEAD (commands/ray_grid.py),
N at a time; the user's workspace is never touched, so several such grids may run at once. Each
run comes back as an ordinary experiment of this repository. There each run's replicates train one
seed at a time (replicates.jobs=1, which decides no bits: the grid's jobs are the parallelism)
unless -S sets replicates.jobs. See the results with `dvc exp show` or
`mnistbench leaderboard`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys

from commands import ray_grid  # stdlib only at import: Ray loads in ray_grid.run_grid alone
from commands.ray_grid import RAN

RESTORED = ["params.yaml", "dvc.lock", "metrics", "plots", "dvclive"]


def split_values(text: str) -> list[str]:
    """'0.1,0.2' -> ['0.1', '0.2']; commas inside [...] belong to a list value: '[16,32],[32,64]'."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values]


def parse_override(arg: str) -> tuple[str, list[str]]:
    match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*=(.*)", arg)
    if not match or not all(split_values(match.group(2))):
        raise SystemExit(f"grid: error: -S {arg!r}: expected key=value[,value...], e.g. train.lr=0.001,0.003")
    return match.group(1), split_values(match.group(2))


def combinations(overrides: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination, the first -S varying slowest: [['train.lr=0.1', 'model.arch=mlp'], ...]."""
    keys = [key for key, _ in overrides]
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(v for _, v in overrides))]


def dirty(paths: list[str]) -> list[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line[3:] for line in out.splitlines()]


def restore() -> None:
    subprocess.run(["git", "checkout", "HEAD", "--", *RESTORED], check=True)
    # DVC outputs back to what dvc.lock says; --force: an interrupted run's half-written outputs are in no cache
    if subprocess.run(["dvc", "checkout", "--quiet", "--force"]).returncode != 0:
        print(
            "grid: warning: `dvc checkout` could not restore every output of HEAD; run `dvc pull` or `dvc repro`",
            file=sys.stderr,
        )


LOCK = ".dvc/tmp/mnistbench-grid.lock"


def check_values(runs: list[list[str]]) -> list:
    """Each run's params.yaml with its overrides, checked by params.py's rules (as the validate
    stage will): one line naming the first bad -S, before anything runs. Values are read as YAML,
    as `dvc exp run -S` reads them."""
    from mnistbench.params import ParamsError, from_dict, load_tree, override

    try:
        base = load_tree("params.yaml")
        from_dict(base)
    except ParamsError as e:
        raise SystemExit(f"grid: error: {e}") from None
    checked = []
    for run in runs:
        tree = base
        for assignment in run:
            try:
                tree = override(tree, assignment)
            except KeyError as e:
                raise SystemExit(
                    f"grid: error: -S {assignment}: params.yaml has no key {e.args[0]} "
                    "(dvc exp run -S only changes keys that exist)"
                ) from None
        try:
            checked.append(from_dict(tree))
        except ParamsError as e:
            raise SystemExit(f"grid: error: -S {' -S '.join(run)}: {e}") from None
    return checked


def hold_lock(shared: bool):
    """One grid in turn at a time in a repository, and none while Ray grids run (those share)."""
    import fcntl

    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    handle = open(LOCK, "a")
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(
            "grid: error: a grid is running in turn in this repository's workspace: wait for it to end"
            if shared
            else "grid: error: another grid is running in this repository: wait for it to "
            "end, or use --jobs N, whose runs work in their own clones"
        ) from None
    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a params.yaml key and the values to try; repeat for a grid",
    )
    ray_grid.add_arguments(parser, "runs", "in turn, in the workspace", "clones from and pushes to")
    parser.add_argument(
        "--target",
        metavar="STAGE",
        help="run only up to this stage, e.g. evaluate: the single "
        "model without the replicates (`dvc exp run STAGE`; default: the whole pipeline)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands, run nothing")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    runs = combinations([parse_override(arg) for arg in args.overrides])
    targets = [args.target] if args.target else []
    commands = [["dvc", "exp", "run", *itertools.chain.from_iterable(("-S", o) for o in run), *targets] for run in runs]
    if args.dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return
    if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True).returncode != 0:
        raise SystemExit("grid: error: no commit yet; experiments start from a commit: commit the pipeline first")
    checked = check_values(runs)
    if args.target:
        from ruamel.yaml import YAML

        stages = list((YAML(typ="safe").load(open("dvc.yaml")) or {}).get("stages", {}))
        if args.target not in stages:
            raise SystemExit(
                f"grid: error: --target {args.target}: dvc.yaml has no such stage; its stages: {', '.join(stages)}"
            )
    if args.jobs == 1 and not args.address:
        changed = dirty(RESTORED)
        if changed:
            raise SystemExit(
                f"grid: error: uncommitted changes in {', '.join(changed)}; the grid resets them to "
                "HEAD when it ends: commit or stash them first"
            )
        lock = hold_lock(shared=False)
        try:
            in_turn(runs, commands)
        finally:
            lock.close()
    else:
        changed = dirty(["."])
        if changed:
            raise SystemExit(
                f"grid: error: uncommitted changes in {', '.join(changed)}; each run clones the "
                "last commit and would not see them: commit or stash them first"
            )
        lock = hold_lock(shared=True)
        try:
            on_ray(runs, checked, args, targets)
        finally:
            lock.close()


def in_turn(runs: list[list[str]], commands: list[list[str]]) -> None:
    results, interrupted = [], False
    try:
        for number, (run, command) in enumerate(zip(runs, commands), 1):
            print(f"grid: [{number}/{len(runs)}] {' '.join(command)}", flush=True)
            name = None
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
                for line in process.stdout:  # shown as it comes: a CNN runs for minutes
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    name = RAN.search(line) or name
            code = process.returncode
            results.append((run, name.group(1) if code == 0 and name else f"FAILED (exit {code})"))
    except KeyboardInterrupt:  # the experiments already finished are kept in their git refs
        interrupted = True
    finally:
        restore()
    report(runs, results, interrupted, "the workspace is back at HEAD")


def report(runs: list[list[str]], results: list[tuple[list[str], str]], interrupted: bool, where: str) -> None:
    print(f"\ngrid: {len(results)} of {len(runs)} run{'; interrupted' if interrupted else ''}; {where}")
    for run, outcome in results:
        print(f"  {outcome:<24} {' '.join(run)}")
    if interrupted:
        raise SystemExit(130)
    if any(outcome.startswith("FAILED") for _, outcome in results):
        raise SystemExit(1)


def on_ray(runs: list[list[str]], checked: list, args, targets: list[str]) -> None:
    target = ray_grid.target_for("grid", args.address, args.git_remote)
    jobs = [
        ray_grid.Job(
            " ".join(run),
            "experiment",
            tuple(run),
            () if any(o.startswith("replicates.jobs=") for o in run) else ("replicates.jobs=1",),
            tuple(targets),
            cpus=params.train.threads,
            gpus=1 if params.train.device == "cuda" else 0,
        )
        for run, params in zip(runs, checked)
    ]
    try:
        outcomes, interrupted = ray_grid.run_grid(
            jobs, target, args.jobs, args.address or None, lambda line: print(line, flush=True)
        )
    except ray_grid.RemoteError as e:
        raise SystemExit(f"grid: error: {e}") from None
    names = [o["name"] for o in outcomes if o and o["ok"]]
    if args.address and names:  # bring the finished runs' refs and outputs into this repository
        pulled = subprocess.run(["dvc", "exp", "pull", args.git_remote, *names], capture_output=True, text=True)
        if pulled.returncode != 0:
            raise SystemExit(
                f"grid: error: `dvc exp pull {args.git_remote} ...` failed: "
                f"{(pulled.stderr.strip().splitlines() or ['?'])[-1]}; the runs are on the remotes: "
                f"pull them with `dvc exp pull {args.git_remote} {' '.join(names)}`"
            )
    results = [(run, o["name"] if o["ok"] else "FAILED: " + o["detail"]) for run, o in zip(runs, outcomes) if o]
    report(runs, results, interrupted, "each finished run is an experiment of this repository (dvc exp show)")


if __name__ == "__main__":
    main()
