"""A grid of experiments, run one after another with `dvc exp run`: a sweep that cannot lose a run.

    python -m mnistbench.grid -S 'train.lr=0.0003,0.001,0.003'
    python -m mnistbench.grid -S 'model.arch=mlp,cnn' -S 'model.channels=[16,32],[32,64]'
    python -m mnistbench.grid --dry-run -S ...       # print the commands only

Every combination of the values runs as its own `dvc exp run -S ...` in the workspace, in order,
never two at once (DVC's queue with several workers has races: dvc#10673). Each finished
experiment is committed by DVC to its own git ref before the next starts, so a crash or Ctrl-C
loses at most the one running; rerun the same grid and DVC's run cache restores the finished ones
in seconds. A failed experiment is reported and the grid goes on. Afterwards the workspace is put
back to HEAD (params.yaml, dvc.lock, metrics/, plots/, dvclive/ and the DVC outputs), which is why the grid
refuses to start while those have uncommitted changes. See the results with `dvc exp show` or
`python -m mnistbench.leaderboard`.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys

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
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
                         check=True, capture_output=True, text=True).stdout
    return [line[3:] for line in out.splitlines()]


def restore() -> None:
    subprocess.run(["git", "checkout", "HEAD", "--", *RESTORED], check=True)
    if subprocess.run(["dvc", "checkout", "--quiet"]).returncode != 0:  # DVC outputs back to what dvc.lock says
        print("grid: warning: `dvc checkout` could not restore every output of HEAD; run `dvc pull` or `dvc repro`",
              file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", required=True, metavar="KEY=V1,V2",
                        help="a params.yaml key and the values to try; repeat for a grid")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands, run nothing")
    args = parser.parse_args()
    runs = combinations([parse_override(arg) for arg in args.overrides])
    commands = [["dvc", "exp", "run", *itertools.chain.from_iterable(("-S", o) for o in run)] for run in runs]
    if args.dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return
    if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True).returncode != 0:
        raise SystemExit("grid: error: no commit yet; experiments start from a commit: commit the pipeline first")
    changed = dirty(RESTORED)
    if changed:
        raise SystemExit(f"grid: error: uncommitted changes in {', '.join(changed)}; the grid resets them to HEAD "
                         "when it ends: commit or stash them first")

    results, interrupted = [], False
    try:
        for number, (run, command) in enumerate(zip(runs, commands), 1):
            print(f"grid: [{number}/{len(runs)}] {' '.join(command)}", flush=True)
            name = None
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
                for line in process.stdout:  # shown as it comes: a CNN runs for minutes
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    name = re.search(r"Ran experiment\(s\): (\S+)", line) or name
            code = process.returncode
            results.append((run, name.group(1) if code == 0 and name else f"FAILED (exit {code})"))
    except KeyboardInterrupt:  # the experiments already finished are kept in their git refs
        interrupted = True
    finally:
        restore()
    print(f"\ngrid: {len(results)} of {len(runs)} run{'; interrupted' if interrupted else ''}; "
          "the workspace is back at HEAD")
    for run, outcome in results:
        print(f"  {outcome:<24} {' '.join(run)}")
    if interrupted:
        raise SystemExit(130)
    if any(outcome.startswith("FAILED") for _, outcome in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
