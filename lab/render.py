"""The figures README.md and docs/ show, rendered from the lab's records and the pipelines' metrics.

    python -m lab.render            # rewrite every rendered block in README.md and docs/*.md
    python -m lab.render --check    # exit 1, naming each block that differs from what its data give

A rendered block sits between marker comments in a page,

    <!-- render: bench -->
    ...what VIEWS["bench"] makes of lab/records/bench.json...
    <!-- /render -->

so refreshing every figure is: run the lab's commands (each writes its record, lab/record.py),
run this, commit. Measured times say the machine and date they came from, and lead with the ratio
where there is one (a reader's machine reproduces the ratio, not the seconds). A missing, malformed
or unknown record is one line naming it, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from lab import record
from mnistbench.entry import run_command
from mnistbench.files import write_text

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- render: ([\w-]+) -->\n)(.*?)(<!-- /render -->)", re.S)


class RenderError(ValueError):
    """A page names a view that does not exist, or a source is missing or malformed; one line."""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RenderError(f"{path.relative_to(ROOT)}: unreadable ({e}); run the pipeline that writes it") from None


def caption(data: dict) -> str:
    return f"<sub>Measured on {record.where(data)}.</sub>"


def seconds(x: float) -> str:
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s" if x < 100 else f"{x:.0f} s ({x / 60:.1f} min)"


# --- the views: each a function of the sources, returning Markdown ---


def bench(data: dict | None = None) -> str:
    data = data or record.load("bench")
    f = data["figures"]
    s, p, v, o = f["seed_loop"], f["project"], f["vendor"], f["project_other_threads"]

    def row(label: str, r: dict) -> str:
        return (
            f"| {label} | {r['threads']} | {r['epoch_seconds']:.3f} | {r['images_per_second']:,.0f} | "
            f"{r['peak_rss_mib']:,.0f} MiB | {r['accuracy']:.4f} ({r['epochs']} epochs) |"
        )

    lines = [
        f"| loop (batch {f['batch']}, {f['images']:,} images) | threads | s/epoch | images/s | peak RSS "
        "| test accuracy |",
        "|---|---|---|---|---|---|",
        f"| **this project against the seed's loop** | | | **{f['speedup']:.1f}×** | | |",
        row("(a) the seed's loop: DataLoader, ToTensor and Normalize per sample", s),
        row("(b) this project: the data as tensors, fused Adam, portable kernels", p),
        row(f"(b) on the vendor's kernels (MKL_CBWR={v['mkl_cbwr']}): not the same bytes on Intel and AMD", v),
        row(f"(b) at {o['threads']} threads", o),
        "",
        f"The portable kernels cost {p['epoch_seconds'] / v['epoch_seconds']:.2f}× the vendor's per epoch. "
        f"Per-epoch times are medians over the epochs after the first; one run of each.",
    ]
    if f.get("against"):
        a = f["against"]
        lines += [
            "",
            f"Side by side with another checkout ({a['checkout']}), alternately, {a['rounds']} rounds: "
            f"this project's epoch takes **{a['ratio']:.2f}×** that one's ({a['epoch_seconds']:.3f} s against "
            f"{a['their_epoch_seconds']:.3f} s, medians).",
        ]
    lines += ["", "| batch size | s/epoch | images/s |", "|---|---|---|"]
    lines += [
        f"| {size} | {r['epoch_seconds']:.3f} | {r['images_per_second']:,.0f} |" for size, r in f["batch_sizes"].items()
    ]
    lines += [
        "",
        "| fixed cost before any training | seconds (median of 3) |",
        "|---|---|",
        f"| DVC's own check (`dvc status`: what a no-op `dvc repro` pays) | {f['dvc_status_seconds']:.2f} |",
    ]
    lines += [
        f"| `{stage}` stage's start: interpreter, imports, exit | {t:.2f} |"
        for stage, t in f["startup_seconds"].items()
    ]
    return "\n".join(lines + ["", caption(data)])


def pipelines(data: dict | None = None) -> str:
    data = data or record.load("pipelines")
    f = data["figures"]
    lines = ["| `dvc repro -f` of | wall time | CPU time | of which |", "|---|---|---|---|"]

    def cpu(figures: dict) -> str:
        return seconds(figures["cpu_seconds"]) if "cpu_seconds" in figures else "not measured"

    if "main" in f:
        st = f["main"]["stages"]
        lines.append(
            f"| the main pipeline (`dvc.yaml`) | {seconds(f['main']['seconds'])} | {cpu(f['main'])} | training the "
            f"model {seconds(st.get('train', 0))}, the replicates {seconds(st.get('replicates', 0))} |"
        )
    if "benchmark" in f:
        cells = f["benchmark"]["cells"]
        cnn = sum(c["share"] for name, c in cells.items() if name.startswith("cnn"))
        lines.append(
            f"| the benchmark (`benchmark/dvc.yaml`) | {seconds(f['benchmark']['seconds'])} | {cpu(f['benchmark'])} "
            f"| the CNN cells {cnn:.0%} of its training |"
        )
    return "\n".join(lines + ["", caption(data)])


def benchmark_cells(data: dict | None = None) -> str:
    """The benchmark's cost per cell (lab/records/pipelines.json) beside its committed accuracy: a
    training run's cost is the cell's time times the processes it trained in, over its seeds."""
    data = data or record.load("pipelines")
    cells = data["figures"]["benchmark"]["cells"]
    lines = [
        "| cell | test accuracy, mean | training and scoring, wall | per training run, one core | share |",
        "|---|---|---|---|---|",
    ]
    for name, c in sorted(cells.items(), key=lambda item: item[0].rsplit("-", 1)[-1] + item[0]):
        metrics = ROOT / f"benchmark/metrics/{name}.json"
        accuracy = f"{_json(metrics)['accuracy']['mean']:.4f}" if metrics.is_file() else "not in the benchmark"
        per_run = seconds(c["seconds"] * c["processes"] / c["seeds"]) if "seeds" in c and "processes" in c else "-"
        lines.append(f"| {name} | {accuracy} | {seconds(c['seconds'])} | {per_run} | {c['share']:.0%} |")
    return "\n".join(lines + ["", caption(data)])


def benchmark_table(short: bool = True) -> str:
    """The benchmark's table from its committed results: short, model x dataset with the tiers."""
    comparisons = _json(ROOT / "benchmark/comparisons.json")
    if not short:
        return (ROOT / "benchmark/results.md").read_text().rstrip("\n")
    datasets = [d for d in comparisons if d != "control"]
    models = []
    for d in datasets:
        for cell in [comparisons[d]["best"], *[p.split(" vs ")[1] for p in comparisons[d]["pairs"]]]:
            model = cell.removesuffix("-" + d)
            if model not in models:
                models.append(model)
    lines = ["| model | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for model in models:
        row = [model]
        for d in datasets:
            name = f"{model}-{d}"
            a = _json(ROOT / f"benchmark/metrics/{name}.json")["accuracy"]
            mark = (
                " **best**"
                if comparisons[d]["best"] == name
                else (" (ties)" if name in comparisons[d]["ties_with_best"] else "")
            )
            shown = (
                f"{a['mean']:.4f} (1, deterministic)" if a["n"] == 1 else f"{a['mean']:.4f} ± {a['sd']:.4f} ({a['n']})"
            )
            row.append(shown + mark)
        lines.append("| " + " | ".join(row) + " |")
    control = comparisons["control"]
    lines += [
        "",
        "Mean ± sd of test accuracy over n seeds (a deterministic method: its one draw). "
        "The control, the same MLP on another seed block, "
        f"differs from it by {control['difference'] * 100:+.2f} pp (Welch p = {control['p']:.2g}): "
        f"{'a real gap' if control['real'] else 'indistinguishable, as it should be'}.",
    ]
    return "\n".join(lines)


def published_figures() -> str:
    """Each published figure (benchmark/published.yaml) against the committed cell that runs its
    recipe (benchmark/metrics/<cell>-<dataset>.json), with the verdict of mnistbench.published."""
    from mnistbench import published

    lines = [
        "| recipe | dataset | published | source | differences | ours | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    checked = 0
    for f in published.load(ROOT / published.PUBLISHED_FILE):
        path = ROOT / f"benchmark/metrics/{f.cell}-{f.dataset}.json"
        shown = f"{f.accuracy:.4f}" + (f" (mean of {f.draws})" if f.draws > 1 else "")
        if path.exists():
            a = _json(path)["accuracy"]
            v = published.verdict(f, a["n"], a["mean"], a["sd"])
            n = "1, deterministic" if a["n"] == 1 else a["n"]
            ours, said, checked = f"{a['mean']:.4f} ± {a['sd']:.4f} ({n})", f"**{v.words()}**", checked + 1
        else:
            ours, said = "-", "not a cell yet"
        lines.append(
            f"| `{f.cell}`: {f.recipe} | {f.dataset} | {shown} | {f.source} | {f.differences} | {ours} | {said} |"
        )
    waiting = (
        f"Figures with a cell that runs their recipe: {checked} of {len(lines) - 2}; the rest wait for their cells."
    )
    return "\n".join([*lines, "", waiting])


def headline() -> str:
    """README's table: the default model's accuracy over seeds, the gate, speed, cost, tests."""
    summary = _json(ROOT / "metrics/replicates.json")
    r, seeds = summary["accuracy"], summary["seeds"]
    single = _json(ROOT / "metrics/test.json")["accuracy"]
    bench_, replicates_, pipelines_, tiers_, fastest_ = (
        record.load(n) for n in ("bench", "bench_replicates", "pipelines", "tiers", "time_to_accuracy")
    )
    b, rep, pipe, tier, fastest = (d["figures"] for d in (bench_, replicates_, pipelines_, tiers_, fastest_))
    threads = b["project"]["threads"]
    fast, slow = tier["fast (make test)"], tier["slow (make test-slow)"]
    rows = [
        "| what | result | from |",
        "|---|---|---|",
        f"| test accuracy of the default MLP over **{r['n']} seeds** ({seeds['first']}-{seeds['last']}) | "
        f"**{r['mean']:.4f} ± {r['sd']:.4f}** (mean ± sd); 95% over seeds {r['ci95_low']:.4f}–{r['ci95_high']:.4f}, "
        f"over seeds and test images {r['total95_low']:.4f}–{r['total95_high']:.4f} | `metrics/replicates.json` |",
        f"| the committed model (seed {seeds['first']}, what `predict` uses) | {single:.4f}: one draw "
        "| `metrics/test.json` |",
        f"| the gate ([how](docs/gate.md)) | {gate_headline()} | `lab/records/gate_power.json` |",
        "| the same bytes on Intel and AMD | `model.pt` identical natively and under emulated Intel Haswell and AMD "
        "EPYC-Rome ([what is checked](docs/reproducibility.md)) | `tests/test_portable_bits.py` |",
        f"| training speed against the seed's DataLoader loop | **{b['speedup']:.1f}×**; an epoch "
        f"{b['project']['epoch_seconds']:.2f} s at {threads} thread{'s' * (threads != 1)} | `lab/records/bench.json` |",
        f"| time to {fastest['target']:.0%} test accuracy ([how](docs/benchmark.md#time-to-accuracy)) | "
        + (
            f"**{seconds(fastest['median_seconds'])}** of training (median of {len(fastest['runs'])} seeds; "
            f"mean accuracy {fastest['mean_accuracy']:.4f}) on {fastest['threads']} cores"
            if fastest["reached"]
            else f"not reached: {fastest['mean_accuracy']:.4f}"
        )
        + " | `lab/records/time_to_accuracy.json` |",
        f"| {rep['seeds']} seeds against one (the replicates' cost) | **{rep['ratio']:.1f}×** one seed | "
        "`lab/records/bench_replicates.json` |",
        f"| whole `dvc repro -f` of the main pipeline, and of the benchmark | {seconds(pipe['main']['seconds'])}; "
        f"{seconds(pipe['benchmark']['seconds'])} | `lab/records/pipelines.json` |",
        f"| `make test` (fast tier), `make test-slow` | {seconds(fast['seconds'])}; {seconds(slow['seconds'])} | "
        "`lab/records/tiers.json` |",
    ]
    machines = {record.where(d).split("; `")[0] for d in (bench_, replicates_, pipelines_, tiers_, fastest_)}
    return "\n".join(
        rows
        + [
            "",
            f"<sub>Times measured on {'; '.join(sorted(machines))}; each record names its "
            "command. Accuracies are committed results: CI reproduces them byte for byte.</sub>",
        ]
    )


def bench_replicates(data: dict | None = None, name: str = "bench_replicates") -> str:
    data = data or record.load(name)
    f = data["figures"]
    lines = [
        f"| {f['epochs']} epochs of the {f['arch']}, each run trained and scored | wall time, median | "
        f"all {f['rounds']} rounds |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {seconds(r['median'])} | " + ", ".join(f"{v:.2f}" for v in r["all"]) + " |"
        for name, r in f["runs"].items()
    ]
    lines += [
        "",
        f"{f['seeds']} seeds cost **{f['ratio']:.1f}×** one seed at its best thread count, "
        f"{f['ratio'] / f['seeds']:.2f} of a single run per seed"
        + (f"; batched in one process, {f['batched_ratio']:.1f}×." if f.get("batched_ratio") else "."),
    ]
    return "\n".join(lines + ["", caption(data)])


def gate_power(data: dict | None = None) -> str:
    data = data or record.load("gate_power")
    f = data["figures"]
    lines = [
        "| change | its pool: test accuracy, mean ± sd (seeds) | true drop | the gate fails | rate [95%] |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['change']} | {r['mean']:.4f} ± {r['sd']:.4f} ({r['pool']}) | {r['drop_pp']:.2f} pp | "
        f"{r['fails']} of {r['draws']} | {r['fails'] / r['draws']:.1%} [{r['rate_low']:.1%}, {r['rate_high']:.1%}] |"
        for r in f["rows"]
    ]
    lines += [
        "",
        f"The gate as params.yaml sets it: one-sided Welch test at {f['significance']:g}, a drop of at least "
        f"{f['min_drop']:g}, a floor of {f['min_accuracy']:g}; blocks of {f['n']} seeds drawn from each pool "
        f"(seeded); 95% Clopper-Pearson intervals.",
    ]
    return "\n".join(lines + ["", caption(data)])


def gate_headline(data: dict | None = None) -> str:
    """One line for README: the false alarms on a neutral change, the detections of the largest drop."""
    data = data or record.load("gate_power")
    rows = data["figures"]["rows"]
    neutral, drops = rows[0], [r for r in rows[1:]]
    biggest = max(drops, key=lambda r: r["drop_pp"])
    smallest = min(drops, key=lambda r: r["drop_pp"])
    return (
        f"false alarms on a neutral change: **{neutral['fails']} of {neutral['draws']}**; a "
        f"{biggest['drop_pp']:.2f}-pp drop caught {biggest['fails']} of {biggest['draws']}, a "
        f"{smallest['drop_pp']:.2f}-pp drop {smallest['fails']} of {smallest['draws']}"
    )


def bench_grid(data: dict | None = None) -> str:
    data = data or record.load("bench_grid")
    f = data["figures"]
    what = f"`dvc exp run {f['target']}`" if f.get("target") else "`dvc exp run`"
    lines = [
        f"| a grid of {f['runs']} runs, each {what} on its own seed | wall time | speed-up |",
        "|---|---|---|",
        f"| `--jobs {f['jobs']}`: Ray tasks, each in its own clone | {seconds(f['ray_seconds'])} | "
        f"**{f['speedup']:.2f}×** |",
        f"| `--jobs 1`: in turn, in the workspace | {seconds(f['in_turn_seconds'])} | 1.00× |",
        "",
        f"Ray's start-up: {f['ray_start_seconds']} s. Largest resident memory of one Ray task's processes "
        f"(Ray worker, dvc, stage): {f['task_max_mib']:.0f} MiB; of Ray's own: {f['ray_max_mib']:.0f} MiB.",
    ]
    return "\n".join(lines + ["", caption(data)])


def sweep(data: dict | None = None) -> str:
    data = data or record.load("sweep")
    f = data["figures"]
    epochs = range(1, f["epochs"] + 1)
    lines = [
        "| epoch | " + " | ".join(map(str, epochs)) + " |",
        "|---|" + "---|" * f["epochs"],
        "| mean val accuracy | " + " | ".join(f"{v:.4f}" for v in f["mean"]) + " |",
        "| min val accuracy | " + " | ".join(f"{v:.4f}" for v in f["min"]) + " |",
        "",
        f"Over seeds 0-{f['seeds'] - 1}, on the validation split (never the test set).",
    ]
    return "\n".join(lines + ["", caption(data)])


def faults(data: dict | None = None) -> str:
    data = data or record.load("faults")
    f = data["figures"]
    lines = [
        "| stage | fault | processes of the run | left after 2 s | dvc ended after | the last process after | "
        "temp files left | the committed bytes back, by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['stage']} | {r['fault']} | {r['processes']} | {r['left']} | {r['seconds_to_exit']:.2f} s | "
        f"{r['seconds_to_clean']:.2f} s | {r['temp_files']} | "
        f"{r['restored_by'] if r['bytes_back'] else '**not back**'} |"
        for r in f["rows"]
    ]
    rounds = f"medians of {f['rounds']} rounds" if f["rounds"] > 1 else "one round"
    shell = f"; dvc ran the stages with SHELL={f['shell']}" if "shell" in f else ""
    lines += ["", f"Processes followed by id as they appear; times from the fault; {rounds}{shell}."]
    return "\n".join(lines + ["", caption(data)])


def variance(data: dict | None = None) -> str:
    data = data or record.load("variance")
    f = data["figures"]
    lines = [
        f"| source of the default MLP's test-accuracy variance ({f['runs']} runs each) | sd | share of the variance |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s['sd'] * 100:.2f} pp | {s['share']:.0%} |" for name, s in f["sources"].items()]
    g = f["gate"]
    needed = f"{g['n_for_0.2pp']} seeds a side" if g["n_for_0.2pp"] else "more than 1,000 seeds a side"
    lines += [
        "",
        f"The binomial sd of an accuracy of {f['mean_accuracy']:.4f} on {f['test_images']:,} images is "
        f"{f['binomial_sd'] * 100:.2f} pp. The gate compares two seed blocks on the same split and test set, "
        f"so only the first source moves its test: at n = {g['n']} and one-sided {g['significance']:g}, it "
        f"detects a drop of {g['detectable_drop'] * 100:.2f} pp 90% of the time, and would need {needed} "
        f"to detect 0.20 pp. A claim about new images must carry the test set's share too: the benchmark's "
        f"intervals over seeds and test images do.",
    ]
    return "\n".join(lines + ["", caption(data)])


def time_to_accuracy(data: dict | None = None) -> str:
    """Time to the target test accuracy on MNIST (lab/records/time_to_accuracy.json)."""
    data = data or record.load("time_to_accuracy")
    f = data["figures"]
    recipe = ", ".join(f"`{r}`" for r in f["recipe"])
    threads = f"{f['threads']} thread{'s' * (f['threads'] != 1)}"
    lines = [
        "| recipe: params.yaml with | seeds | mean test accuracy | 95% over seeds and test images | "
        "training time, median (its CPU time) |",
        "|---|---|---|---|---|",
        f"| {recipe} | {len(f['runs'])} | {f['mean_accuracy']:.4f} | {f['total_low']:.4f}–{f['total_high']:.4f} | "
        f"{seconds(f['median_seconds'])} ({seconds(f['median_cpu_seconds'])}) on {threads} |",
        "",
        f"Target: a mean test accuracy of {f['target']:.2f} over the seeds; "
        + (
            f"reached, in a median {seconds(f['median_seconds'])} of training a seed"
            + (
                f" (on this test set: the interval's low end, {f['total_low']:.4f}, says that on new images "
                "the recipe may fall short of it)."
                if f["total_low"] < f["target"]
                else "."
            )
            if f["reached"]
            else f"not reached ({f['mean_accuracy']:.4f})."
        )
        + " Each seed: "
        + "; ".join(f"{r['seed']}: {r['test_accuracy']:.4f} in {seconds(r['seconds'])}" for r in f["runs"])
        + ".",
    ]
    return "\n".join(lines + ["", caption(data)])


def tiers(data: dict | None = None) -> str:
    data = data or record.load("tiers")
    f = data["figures"]
    lines = ["| tier | wall time |", "|---|---|"]  # not the counts: pytest reports them
    lines += [f"| {name} | {seconds(t['seconds'])} |" for name, t in f.items()]
    return "\n".join(lines + ["", caption(data)])


def stacks(data: dict | None = None) -> str:
    """docs/reproducibility.md's table: each stack, how it was run, its tier and what it gave."""
    data = data or record.load("stacks")
    f = data["figures"]
    lines = ["| stack | how it was run | tier | result |", "|---|---|---|---|"]
    for key in ("python3.11", "python3.12", "python3.13", "torch-cpu", "kernels", "torch-next"):
        r = f.get(key)
        if not r:
            continue
        if "skipped" in r:
            lines.append(f"| {r['stack']} | - | - | not run: {r['skipped']} |")
            continue
        if r["tier"] == 1:
            result = "**the committed bytes**" if r["exit"] == 0 else "other bytes on the same stack: a bug"
        else:
            rep = r["replicates"]
            result = (
                f"**{rep['verdict']}**: replicates {rep['here']} against {rep['committed']}; difference "
                f"{rep['difference']} pp, margin {rep['margin']} pp, TOST p = {rep['p']}"
            )
        lines.append(f"| {r['stack']} | {r['how']} | {r['tier']} | {result} |")
    for name, said in (f.get("lock") or {}).get("platforms", {}).items():
        lines.append(f"| {name} | the lock's pins and hashes against PyPI's files | - | {said} |")
    return "\n".join(lines + ["", caption(data)])


VIEWS: dict[str, Callable[[], str]] = {
    "tiers": tiers,
    "variance": variance,
    "faults": faults,
    "sweep": sweep,
    "bench-grid": bench_grid,
    "gate-power": gate_power,
    "bench-replicates": bench_replicates,
    "bench": bench,
    "pipelines": pipelines,
    "benchmark-cells": benchmark_cells,
    "benchmark-short": lambda: benchmark_table(short=True),
    "benchmark-whole": lambda: benchmark_table(short=False),
    "headline": headline,
    "stacks": stacks,
    "published": published_figures,
    "time-to-accuracy": time_to_accuracy,
}


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def rendered(page: Path) -> str:
    """The page with every block rendered anew from its data."""
    text = page.read_text()

    def fill(match: re.Match) -> str:
        view = match.group(2)
        if view not in VIEWS:
            raise RenderError(f"{_name(page)}: no view {view!r}; the views: {', '.join(VIEWS)}")
        try:
            body = VIEWS[view]()
        except record.RecordError as e:
            raise RenderError(str(e)) from None
        except (KeyError, TypeError, ValueError) as e:
            raise RenderError(
                f"{page.relative_to(ROOT)}: view {view!r}: its record lacks {e}; run its command again"
            ) from None
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def stale(pages: list[Path] = PAGES) -> list[str]:
    """Each block whose text differs from what its data give, as 'page: view'."""
    found = []
    for page in pages:
        fresh = rendered(page)
        for old, new in zip(BLOCK.finditer(page.read_text()), BLOCK.finditer(fresh)):
            if old.group(3) != new.group(3):
                found.append(f"{_name(page)}: {old.group(2)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale block")
    args = parser.parse_args()
    try:
        if args.check:
            found = stale()
            if found:
                raise SystemExit("render: stale (run `python -m lab.render`): " + "; ".join(found))
            print(f"render: every rendered block of {len(PAGES)} pages matches its data")
            return
        pages = {page: rendered(page) for page in PAGES}  # all of them first: an error writes nothing
    except RenderError as e:
        raise SystemExit(f"render: error: {e}") from None
    for page, text in pages.items():
        if text != page.read_text():
            write_text(page, text)
            print(f"render: {page.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    run_command("render", main)
