"""The lab's records: what a measuring command found, where, when and how it was run, as data.

    record.write("bench", figures, argv=sys.argv)     # lab/records/bench.json, atomically
    data = record.load("bench")                       # RecordError naming the file and what is wrong

A record holds the command line, the date, the machine (CPU model, cores, memory, GPU, torch,
Python, OS) and the figures, and nothing edited by hand: rerunning the command replaces it.
`python -m lab.render` puts the figures into README.md and docs/ (between marker comments), and
lab/tests/test_render.py fails when a rendered table and its record disagree.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from mnistbench.files import write_json

FOLDER = Path(os.environ.get("LAB_RECORDS", Path(__file__).with_name("records")))  # tests write elsewhere
COMMANDS = {  # record name -> the command that writes it
    "bench": "python -m lab.bench",
    "bench_replicates": "python -m lab.bench_replicates",
    "bench_replicates_cuda": "python -m lab.bench_replicates",
    "bench_grid": "python -m lab.bench_grid",
    "gate_power": "python -m lab.gate_power",
    "pipelines": "python -m lab.pipelines",
    "faults": "python -m lab.faults",
    "tiers": "python -m lab.tiers",
    "variance": "python -m lab.variance",
    "sweep": "python -m lab.sweep",
    "stacks": "python -m lab.stacks",
    "time_to_accuracy": "python -m lab.time_to_accuracy",
}
FIELDS = ("command", "date", "machine", "figures")


class RecordError(ValueError):
    """A record is missing, malformed, or from an unknown command; one line naming the file."""


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it ("AMD EPYC ..."), where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine() -> dict:
    import torch

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        memory = None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1) if memory else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def write(name: str, figures: dict, argv: list[str] | None = None) -> Path:
    if name not in COMMANDS:
        raise RecordError(f"no command writes a record named {name!r}; the records: {', '.join(COMMANDS)}")
    args = (argv if argv is not None else sys.argv)[1:]
    path = FOLDER / f"{name}.json"
    write_json(
        path,
        {
            "command": " ".join([COMMANDS[name], *map(shlex.quote, args)]),
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "figures": figures,
        },
    )
    return path


def load(name: str, folder: Path = FOLDER) -> dict:
    path = folder / f"{name}.json"
    if name not in COMMANDS:
        raise RecordError(f"{path}: no command writes a record named {name!r}; the records: {', '.join(COMMANDS)}")
    if not path.is_file():
        raise RecordError(f"{path}: no such record; run `{COMMANDS[name]}` to make it")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not a record (not JSON: {e}); run `{COMMANDS[name]}` again") from None
    missing = [field for field in FIELDS if not isinstance(data, dict) or field not in data]
    if missing:
        raise RecordError(f"{path}: not a record (no {missing[0]}); run `{COMMANDS[name]}` again")
    if not data["command"].startswith(COMMANDS[name]):
        raise RecordError(f"{path}: written by `{data['command']}`, not by {COMMANDS[name]}")
    return data


def where(data: dict) -> str:
    """The machine and date a record was measured on, for a table's caption."""
    m = data["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ", no GPU"
    memory = f", {m['memory_gib']:.0f} GiB" if m.get("memory_gib") else ""
    return f"{m['cpu']}, {m['cores']} cores{memory}{gpu}; torch {m['torch']}; {data['date']}; `{data['command']}`"
