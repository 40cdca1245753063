"""Stage compare of the benchmark: every pair of cells within a dataset, which gaps are real, the table and its picture.

    dvc repro benchmark/dvc.yaml   # or: python -m stages.benchmark_compare --params benchmark/params.yaml ...

Reads every cell's per-seed test predictions and metrics (and the control's), and writes the
comparisons (mnistbench/benchmark.py) as a metrics file, the whole table as Markdown and the
interval plot. A cell's files that are missing, malformed, or scored on another test set than
the other cells of its dataset end the stage in one line naming the cell.
"""

import argparse
from pathlib import Path

from mnistbench import benchmark
from mnistbench.entry import run_stage
from mnistbench.files import write_bytes
from mnistbench.protocol import load_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="the benchmark's protocol")
    parser.add_argument("--cells", type=Path, required=True, help="folder of the cells' predictions/ and metrics/")
    parser.add_argument("--comparisons", type=Path, required=True, help="metrics file (JSON) to write")
    parser.add_argument("--table", type=Path, required=True, help="Markdown table to write")
    parser.add_argument("--plot", type=Path, required=True, help="interval plot (PNG) to write")
    args = parser.parse_args()
    protocol = load_protocol(args.params)
    cells = {name: benchmark.read_cell(name, args.cells) for name in protocol.names()}
    control = benchmark.read_cell("control", args.cells)
    results = benchmark.compare_cells(protocol, cells, control)

    outputs = benchmark.compare_outputs(protocol, cells, results)
    paths = {"comparisons.json": args.comparisons, "results.md": args.table, "plots/intervals.png": args.plot}
    for name, data in outputs.items():
        write_bytes(paths[name], data)
    for dataset in protocol.datasets:
        r = results[dataset]
        ties = f", tied by {', '.join(r['ties'])}" if r["ties"] else ""
        print(f"compare: {dataset}: best {r['best']}{ties}")
    print(f"compare: control: {'a real gap' if results['control'].real else 'indistinguishable, as it should be'}")


if __name__ == "__main__":
    run_stage("benchmark_compare", main)
