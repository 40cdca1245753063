"""The figures in README.md and docs/ are the records' (lab/render.py): every rendered block is what
its data give, a number edited by hand fails, a measured figure outside a rendered block fails, and
a bad record is one line that writes nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import record, render

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_rendered_block_matches_its_record():
    assert render.stale() == []


def test_a_number_edited_by_hand_in_a_rendered_block_is_found(tmp_path):
    page = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    block = next(render.BLOCK.finditer(text))
    digits = re.search(r"\d\.\d{2,}", block.group(3))
    assert digits, "README's first rendered block holds no figure to edit"
    edited = text[: block.start(3) + digits.start()] + "9" + text[block.start(3) + digits.start() + 1 :]
    page.write_text(edited)
    assert render.stale([page]) == [f"README.md: {block.group(2)}"]


# A figure a reader takes for a measurement: a time, a ratio, a rate, an accuracy, a size.
MEASURED = re.compile(r"(?<![\w.-])(\d+(?:[.,]\d+)?\s?(?:s|ms|min|×|x|%|pp|GB|GiB|MB|MiB)(?![\w])|0\.9\d{2,})")
FENCE = re.compile(r"(?ms)^```.*?^```")


# Settings, not measurements: the confidence of the intervals and the power the gate's detectable drop
# is stated at.
LEVELS = re.compile(r"(?<![\w.,])(?:95|90)%")


def figures_outside_blocks(text: str) -> list[str]:
    text = render.BLOCK.sub("", FENCE.sub("", text))
    text = re.sub(r"`[^`]*`", "", text)  # commands and code: their numbers are arguments
    text = LEVELS.sub("", text)
    return MEASURED.findall(text)


@pytest.mark.parametrize("page", render.PAGES, ids=lambda p: p.name)
def test_no_measured_figure_stands_outside_a_rendered_block(page):
    """A time, ratio, rate or accuracy in prose has no record behind it and goes stale unseen."""
    assert figures_outside_blocks(page.read_text()) == []


def test_the_scan_finds_a_figure_typed_into_prose():
    assert figures_outside_blocks("Training is 11.9× the seed's loop and takes 1.37 s.") == ["11.9×", "1.37 s"]
    assert figures_outside_blocks("It reached 0.9945 after 11 epochs.") == ["0.9945"]
    assert figures_outside_blocks("its 95% interval; 90% of the time; 97.95% of the runs") == ["97.95%"]
    assert (
        figures_outside_blocks("<!-- render: bench -->\n1.37 s\n<!-- /render -->\n`dvc exp run -S train.lr=0.5`") == []
    )


def test_no_clock_time_in_readme_or_docs():
    for page in render.PAGES:
        assert "UTC" not in page.read_text(), page.name


@pytest.mark.parametrize(
    "fault, says",
    [
        ("missing", "no such record; run `python -m lab.bench` to make it"),
        ("malformed", "not a record (not JSON"),
        ("no figures", "not a record (no figures)"),
        ("another command", "written by `python -m lab.sweep`, not by python -m lab.bench"),
    ],
)
def test_a_bad_record_is_one_line_and_the_render_writes_nothing(tmp_path, fault, says):
    records = tmp_path / "records"
    shutil.copytree(ROOT / "lab/records", records)
    bench = records / "bench.json"
    if fault == "missing":
        bench.unlink()
    elif fault == "malformed":
        bench.write_text('{"command": "python -m lab.bench", "date": ')
    elif fault == "no figures":
        bench.write_text(json.dumps({"command": "python -m lab.bench", "date": "x", "machine": {}}))
    else:
        bench.write_text(
            json.dumps({**json.loads((ROOT / "lab/records/bench.json").read_text()), "command": "python -m lab.sweep"})
        )
    pages = {p: p.read_bytes() for p in render.PAGES}
    done = subprocess.run(
        [sys.executable, "-m", "lab.render"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"LAB_RECORDS": str(records), "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("render: error: ") and says in lines[0], done.stderr
    assert {p: p.read_bytes() for p in render.PAGES} == pages


def test_every_record_names_the_machine_and_its_command():
    for path in sorted((ROOT / "lab/records").glob("*.json")):
        data = record.load(path.stem)
        assert set(data["machine"]) >= {"cpu", "cores", "memory_gib", "gpu", "torch", "python", "os"}
        assert data["command"].startswith(record.COMMANDS[path.stem])
