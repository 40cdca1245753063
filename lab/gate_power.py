"""What the accuracy gate does, measured: its false-alarm rate on neutral changes and its detection
rate on real regressions.

    python -m lab.gate_power                         # after `dvc repro prepare`; ~10 minutes here
    python -m lab.gate_power --pool 60 --regression-pool 30 --draws 200

Trains, once, a pool of seeds of the configuration in params.yaml (seeds 1000, 1001, ...: none
of the committed block) and a smaller pool of each regression (`--regression KEY=VALUE`, e.g.
fewer epochs or a narrower MLP), all through mnistbench.replicates as the replicates stage trains
them, and scores each seed on the test set. Then, with a seeded RNG:
  - false alarms: `--draws` pairs of disjoint blocks of replicates.n seeds, both from the default
    pool, as a neutral change (another train.seed) would give; the share the gate fails;
  - detection: a block from the default pool against a block from a regression's pool; the share
    the gate fails.
The gate's rule is commands.gate.decide with the `gate` section of params.yaml, as in CI.
Per-seed accuracies are cached in --cache (JSON, keyed by configuration and seed), so a rerun
with other --draws or gate settings costs no training. Writes lab/records/gate_power.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

from scipy import stats

from commands.gate import FAIL, Sample, decide
from lab import record, render
from mnistbench import models, optim
from mnistbench.data import load_normalized
from mnistbench.entry import run_command
from mnistbench.files import FileFormatError, write_json
from mnistbench.params import Params, ParamsError, from_dict, load_tree
from mnistbench.params import override as params_override
from mnistbench.replicates import fit_replicates, quiet
from mnistbench.runtime import configure_torch, run_info

DEFAULT_REGRESSIONS = ("train.epochs=3", "train.epochs=5", "model.mlp.hidden=[64,32]", "model.mlp.hidden=[32,16]")
POOL_FIRST_SEED = 1000
BLOCK = 10  # seeds per fit_replicates call: the cache is saved after each


def override(tree: dict, assignment: str) -> Params:
    """params.yaml's tree with one `section.key=value` applied as `dvc exp run -S` applies it
    (params.override), checked by params.py's rules and the registries' (a model's, an optimizer's
    keys): a bad one fails before any training."""
    try:
        changed = params_override(tree, assignment)
    except KeyError:
        raise ParamsError(
            f"--regression {assignment}: expected KEY=VALUE with a key of params.yaml, e.g. train.epochs=3"
        ) from None
    params = from_dict(changed, path=f"--regression {assignment}")
    models.MODELS.check_all(params.model.arch, params.model.sections, f"--regression {assignment}", "arch")
    optim.check(params.train, f"--regression {assignment}")
    return params


def pool(params: Params, size: int, data: Path, cache: dict, key: str, label: str, device, jobs: int) -> list[float]:
    """Test accuracy of seeds POOL_FIRST_SEED .. + size - 1 of this configuration (cached under
    `key`), trained as needed."""
    done = cache.setdefault(key, {})
    missing = [s for s in range(POOL_FIRST_SEED, POOL_FIRST_SEED + size) if str(s) not in done]
    if missing:
        mean, std = params.train.normalize_mean, params.train.normalize_std
        splits = tuple(load_normalized(data / f"{split}.pt", mean, std, device) for split in ("train", "val", "test"))
        for i in range(0, len(missing), BLOCK):
            seeds = missing[i : i + BLOCK]
            started = time.perf_counter()
            results = fit_replicates(params.model, params.train, seeds, splits, device, jobs=jobs, log=quiet)
            for seed, (scores, _, _) in zip(seeds, results):
                done[str(seed)] = scores["accuracy"]
            print(
                f"gate_power: {label}: seeds {seeds[0]}-{seeds[-1]} in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    return [done[str(s)] for s in range(POOL_FIRST_SEED, POOL_FIRST_SEED + size)]


def fail_rate(base_pool: list[float], other: list[float] | None, n: int, draws: int, rules, rng: random.Random):
    """Share of `draws` gate decisions that fail: a block of n from base_pool against a block of n
    from `other` (None: a disjoint block of the same pool)."""

    def sample(values):
        return Sample(len(values), statistics.fmean(values), statistics.stdev(values))

    fails = 0
    for _ in range(draws):
        if other is None:
            both = rng.sample(base_pool, 2 * n)
            baseline, current = both[:n], both[n:]
        else:
            baseline, current = rng.sample(base_pool, n), rng.sample(other, n)
        fails += decide(sample(baseline), sample(current), rules).code == FAIL
    return fails


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a rate of k in n."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=60, help="seeds of the default configuration (default 60)")
    parser.add_argument("--regression-pool", type=int, default=30, help="seeds of each regression (default 30)")
    parser.add_argument(
        "--regression", action="append", help=f"KEY=VALUE, repeatable (default: {', '.join(DEFAULT_REGRESSIONS)})"
    )
    parser.add_argument("--draws", type=int, default=200, help="gate decisions per row (default 200)")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/gate_power.json"))
    parser.add_argument("--jobs", type=int, help="seeds trained at once (default: replicates.jobs)")
    parser.add_argument("--significance", type=float, help="the gate's level to replay (default: gate.significance)")
    args = parser.parse_args()
    if args.significance is not None and not 0 < args.significance < 1:
        parser.error(f"--significance {args.significance:g}: must lie between 0 and 1, e.g. 0.01")
    if args.draws < 1 or (args.jobs is not None and args.jobs < 1):
        parser.error("--draws and --jobs must be at least 1")
    tree = load_tree()  # kept: each --regression is applied to it
    params = from_dict(tree)
    n, rules = params.replicates.n, params.gate
    if args.significance is not None:
        rules = dataclasses.replace(rules, significance=args.significance)
    if args.pool < 2 * n or args.regression_pool < n:
        parser.error(f"--pool must be at least 2 x replicates.n = {2 * n}, --regression-pool at least {n}")
    regressions = [(assignment, override(tree, assignment)) for assignment in args.regression or DEFAULT_REGRESSIONS]
    device = configure_torch(params.train.threads, params.train.device)
    jobs = args.jobs or params.replicates.jobs
    try:
        cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileFormatError(
            f"{args.cache}: not the JSON this command writes ({e}); delete it "
            "(it only saves training: the seeds are trained again)"
        ) from None

    def key(p: Params) -> str:  # what decides a seed's result: the model and training sections, the dataset,
        # and what run_info records as deciding the bits (torch, kernels, threads)
        return json.dumps(
            {
                "model": dataclasses.asdict(p.model),
                "train": dataclasses.asdict(p.train) | {"seed": None},
                "dataset": p.prepare.dataset,
                "run_info": run_info(device),
            },
            sort_keys=True,
        )

    base = pool(params, args.pool, args.data, cache, key(params), "params.yaml", device, jobs)
    write_json(args.cache, cache)
    rng = random.Random(0)
    rows = [("the same configuration, another seed block (neutral)", base, None)]
    for assignment, changed in regressions:
        rows.append(
            (
                f"`{assignment}`",
                pool(changed, args.regression_pool, args.data, cache, key(changed), assignment, device, jobs),
                True,
            )
        )
        write_json(args.cache, cache)

    base_mean = statistics.fmean(base)
    table = []
    for label, values, regression in rows:
        fails = fail_rate(base, values if regression else None, n, args.draws, rules, rng)
        low, high = clopper_pearson(fails, args.draws)
        table.append(
            {
                "change": label,
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values),
                "pool": len(values),
                "drop_pp": (base_mean - statistics.fmean(values)) * 100,
                "fails": fails,
                "draws": args.draws,
                "rate_low": low,
                "rate_high": high,
            }
        )
    figures = {
        "significance": rules.significance,
        "min_drop": rules.min_drop,
        "min_accuracy": rules.min_accuracy,
        "n": n,
        "draws": args.draws,
        "rows": table,
    }
    path = record.write("gate_power", figures)
    print(render.gate_power(record.load("gate_power")))
    print(f"gate_power: {path}")


if __name__ == "__main__":
    run_command("gate_power", main)
