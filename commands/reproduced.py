"""Did a rerun reproduce the committed results? Two tiers, decided by what decides the bits.

    mnistbench reproduced [--rev HEAD]    # exit 0: reproduced; 1: not; 2: cannot tell (one line, why)

metrics/run_info.json records what decides the float bits of a run (mnistbench/runtime.py), and
the committed one is in git. The workspace's record is compared with the one at --rev, field by
field (BIT_FIELDS: the torch release, not its build tag; the machine; the device; the threads; the
kernels' pins; ...):

- **tier 1, the same stack**: every such field matches, so the promise is the same bytes:
  dvc.lock and everything under metrics/, plots/ and dvclive/ (and each further pipeline's
  dvc.lock, metrics/ and plots/) must equal --rev's to the byte. A difference is a bug, reported
  as one. Measured times are not results: the stages write them to timings/, outside git.
- **tier 2, another stack** (another torch, a GPU, another kernel path or thread count): other
  bytes are expected, and the promise is statistical equivalence. The replicates
  (metrics/replicates.json) and each benchmark cell in the workspace are compared with the
  committed distribution by a TOST (two one-sided Welch tests at 0.05, mnistbench/stats.py) at a
  margin derived from the gate: the drop the gate detects 90% of the time at the committed n and
  sd (at least gate.min_drop). Equivalent: each 90% interval of the difference inside its margin.
  The verdict names the fields that differ.

The benchmark's cells train with its protocol's device and threads (benchmark/params.yaml), on the
stack of the main pipeline's record otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mnistbench.entry import run_command

RESULTS = ("dvc.lock", "metrics", "plots", "dvclive")
RUN_INFO = "metrics/run_info.json"
REPLICATES = "metrics/replicates.json"
BENCHMARK = "benchmark"
# What can change a bit (run_info records nothing else). Not the torch build tag, which run_info
# leaves out and older records kept: PyTorch's CPU-only build of 2.13.0 (2.13.0+cpu) trains the
# committed model to the byte, as the CUDA build (2.13.0+cu130) does on the CPU (lab/stacks.py).
BIT_FIELDS = (
    "torch",
    "machine",
    "device",
    "threads",
    "cpu_capability",
    "mkl_cbwr",
    "onednn_max_cpu_isa",
    "openblas_coretype",
    "scikit_learn",
    "linear",
    "deterministic_algorithms",
    "cuda",
)
SAME, EQUIVALENT, DIFFERENT, UNDECIDED = 0, 0, 1, 2
ALPHA = 0.05


class CannotTell(Exception):
    """A record or distribution that cannot be read or compared; its message is one line."""


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], check=check, capture_output=True, text=True)


def results() -> list[str]:
    """The paths holding results: this pipeline's, and those of each dvc.yaml in a folder below."""
    found = list(RESULTS)
    for pipeline in sorted(Path(".").glob("*/dvc.yaml")):
        folder = pipeline.parent.as_posix()
        found += [f"{folder}/dvc.lock", f"{folder}/metrics", f"{folder}/plots"]
    return found


def differences(rev: str = "HEAD") -> list[str]:
    """What differs between `rev` and the workspace, as lines for a person; empty when reproduced."""
    paths = results()
    changed = [
        f"{line[3:]} ({'new' if line.startswith('??') else 'changed'})"
        for line in _git("status", "--porcelain", "--untracked-files=all", "--", *paths).stdout.splitlines()
    ]
    changed += [
        f"{path} (changed)"
        for path in _git("diff", "--name-only", rev, "--", *paths).stdout.splitlines()
        if f"{path} (changed)" not in changed
    ]
    return changed


def _json(text: str, where: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        raise CannotTell(f"{where}: not valid JSON; {what}") from None
    if not isinstance(data, dict):
        raise CannotTell(f"{where}: not a JSON object; {what}")
    return data


def committed(path: str, rev: str) -> str | None:
    """The file's text at `rev`, or None where git has none."""
    shown = _git("show", f"{rev}:{path}", check=False)
    return shown.stdout if shown.returncode == 0 else None


def stack(record: dict, where: str) -> dict:
    """The fields of a run_info record that can change a bit; CannotTell where it is not one."""
    missing = [f for f in BIT_FIELDS if f not in record and f != "cuda"]
    if missing:
        raise CannotTell(
            f"{where}: not this pipeline's run record (no field {missing[0]}); "
            f"rerun `dvc repro` to write it (mnistbench/runtime.py)"
        )
    fields = {f: record.get(f) for f in BIT_FIELDS}
    fields["torch"] = str(fields["torch"]).split("+")[0]  # the release, not the build tag
    return fields


def read_stacks(rev: str) -> tuple[dict, dict]:
    """(committed, workspace) stacks of the main pipeline."""
    here = Path(RUN_INFO)
    if not here.is_file():
        raise CannotTell(f"{RUN_INFO}: missing in the workspace; run `dvc repro` first")
    current = stack(_json(here.read_text(), RUN_INFO, "rerun `dvc repro train` to write it again"), RUN_INFO)
    text = committed(RUN_INFO, rev)
    if text is None:
        raise CannotTell(
            f"{rev}:{RUN_INFO}: not in git at {rev} (committed before run records were); compare with a later --rev"
        )
    where = f"{rev}:{RUN_INFO}"
    return stack(_json(text, where, f"restore it: `git checkout {rev} -- {RUN_INFO}`"), where), current


def benchmark_stack(main: dict, protocol_path: Path) -> dict:
    """The stack the benchmark's cells train on: the main record's, with the protocol's device and threads."""
    from mnistbench.params import ParamsError, load_tree

    try:
        train = load_tree(protocol_path).get("train", {})
    except ParamsError:
        return main
    changed = dict(main)
    if train.get("device") in ("cpu", "cuda"):
        changed["device"] = train["device"]
        if train["device"] == "cpu":
            changed["cuda"] = None
    if isinstance(train.get("threads"), int):
        changed["threads"] = train["threads"]
    return changed


def differing(old: dict, new: dict) -> list[str]:
    return [f"{f} ({old.get(f)!r} -> {new.get(f)!r})" for f in BIT_FIELDS if old.get(f) != new.get(f)]


def summary(data: dict, where: str) -> tuple[int, float, float, bool]:
    """(n, mean, sd, deterministic) of the test accuracy in a replicates or cell summary."""
    accuracy = data.get("accuracy")
    values = [accuracy.get(k) if isinstance(accuracy, dict) else None for k in ("n", "mean", "sd")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise CannotTell(f"{where}: no accuracy n, mean and sd; rerun the stage that writes it")
    n, mean, sd = values
    return int(n), float(mean), float(sd), bool(data.get("deterministic"))


def distributions(rev: str) -> list[tuple[str, str]]:
    """(label, path) of each distribution to compare: the replicates, then every benchmark cell
    present in the workspace."""
    found = [("replicates", REPLICATES)] if Path(REPLICATES).is_file() else []
    found += [(f"benchmark {p.stem}", p.as_posix()) for p in sorted(Path(BENCHMARK, "metrics").glob("*.json"))]
    return found


def compare(label: str, path: str, rev: str, gate) -> dict:
    """One distribution against its committed one: the TOST's verdict at the gate's margin."""
    from mnistbench import stats

    text = committed(path, rev)
    if text is None:
        return {"label": label, "new": True}
    n_old, mean_old, sd_old, fixed_old = summary(_json(text, f"{rev}:{path}", "restore it from git"), f"{rev}:{path}")
    n_new, mean_new, sd_new, fixed_new = summary(_json(Path(path).read_text(), path, "rerun its stage"), path)
    if (n_old < 2 and not fixed_old) or (n_new < 2 and not fixed_new):
        short = f"{rev}:{path}" if n_old < 2 and not fixed_old else path
        raise CannotTell(
            f"{short}: {min(n_old, n_new)} seed(s), and the equivalence test needs at least 2 a side "
            "(a deterministic method says so: deterministic: true); rerun it with replicates.n >= 2"
        )
    detectable = stats.detectable_drop(sd_old, n_old, sd_old, n_old, gate.significance) if n_old > 1 else 0.0
    margin = max(gate.min_drop, detectable)
    test = stats.tost(mean_old, sd_old, n_old, mean_new, sd_new, n_new, margin, ALPHA)
    power = stats.tost_power(sd_old, n_old, sd_old, n_old, margin, 0.0, ALPHA) if n_old > 1 else 1.0
    return {
        "label": label,
        "old": (mean_old, sd_old, n_old),
        "new": (mean_new, sd_new, n_new),
        "test": test,
        "power": power,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| results | committed: mean ± sd (n) | here | difference, 90% interval (pp) | margin (pp) | TOST p "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("new") is True:
            lines.append(f"| {r['label']} | - | new | | | | not compared |")
            continue
        t = r["test"]
        (mo, so, no), (mn, sn, nn) = r["old"], r["new"]
        lines.append(
            f"| {r['label']} | {mo:.4f} ± {so:.4f} ({no}) | {mn:.4f} ± {sn:.4f} ({nn}) | {t.difference * 100:+.2f} "
            f"[{t.ci90[0] * 100:+.2f}, {t.ci90[1] * 100:+.2f}] | ±{t.margin * 100:.2f} | {t.p:.2g} | "
            f"{'equivalent' if t.equivalent else 'not shown equivalent'} |"
        )
    return "\n".join(lines)


def verdict(rev: str) -> tuple[int, str]:
    """(exit status, what to print)."""
    old, new = read_stacks(rev)
    fields = differing(old, new)
    protocol = Path(BENCHMARK, "params.yaml")
    bench_fields = (
        differing(benchmark_stack(old, protocol), benchmark_stack(new, protocol)) if protocol.is_file() else []
    )
    changed = differences(rev)
    if not fields and not bench_fields:
        if not changed:
            return SAME, (
                f"reproduced: tier 1, the same stack as {rev} (torch {new['torch']}, {new['device']}, "
                f"{new['threads']} thread(s), {new['cpu_capability']}): {', '.join(results())} match byte for byte"
            )
        return DIFFERENT, (
            f"reproduced: FAIL: tier 1, the same stack as {rev} in every field that decides the bits, yet results "
            f"differ: a bug in this repository's reproducibility; report it with {RUN_INFO} and this list:\n  "
            + "\n  ".join(changed)
        )
    from mnistbench.params import load_params

    gate = load_params().gate
    rows = [compare(label, path, rev, gate) for label, path in distributions(rev)]
    compared = [r for r in rows if r.get("new") is not True]
    if not compared:
        raise CannotTell(f"no replicates or benchmark cells in the workspace to compare with {rev}; run `dvc repro`")
    equivalent = all(r["test"].equivalent for r in compared)
    stack_line = "; ".join(
        part
        for part in (
            f"the main pipeline's in {', '.join(fields)}" if fields else "",
            f"the benchmark's in {', '.join(bench_fields)}" if bench_fields and bench_fields != fields else "",
        )
        if part
    )
    power = min(r["power"] for r in compared)
    text = (
        f"reproduced: tier 2: the stack differs from {rev}'s: {stack_line}. Other bytes are expected "
        f"({len(changed)} result file(s) differ), so the distributions are compared: a TOST at {ALPHA:g} per row, "
        f"each margin the drop the gate detects 90% of the time at the committed n and sd (at least gate.min_drop);"
        f" a true drop of that size is called equivalent at most {ALPHA:.0%} of the time, no change at least "
        f"{power:.0%} of the time.\n\n{table(rows)}\n\n"
    )
    if equivalent:
        return (
            EQUIVALENT,
            text + "reproduced: equivalent: every distribution is within its margin of the committed one",
        )
    failing = ", ".join(r["label"] for r in compared if not r["test"].equivalent)
    return DIFFERENT, text + (
        f"reproduced: FAIL: not shown equivalent: {failing}; on this stack the results may differ from the "
        f"committed ones (more seeds narrow the interval: replicates.n)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision holding the expected results (default HEAD)")
    args = parser.parse_args()
    try:
        _git("rev-parse", "--verify", "--quiet", f"{args.rev}^{{commit}}")  # outside a repository: git says why
        code, text = verdict(args.rev)
    except subprocess.CalledProcessError as e:
        said = " ".join((e.stderr or "").split())[-300:] or f"no commit {args.rev}"
        print(f"reproduced: error: `{' '.join(e.cmd)}` exited {e.returncode}: {said}", file=sys.stderr)
        raise SystemExit(UNDECIDED) from None
    except CannotTell as e:  # nothing written: one line, as for any bad input, and its own exit status
        print(f"reproduced: error: {e}", file=sys.stderr)
        raise SystemExit(UNDECIDED) from None
    print(text)
    raise SystemExit(code)


if __name__ == "__main__":
    run_command("reproduced", main)
