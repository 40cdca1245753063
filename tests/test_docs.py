"""README and docs/: every relative link and anchor resolves, README stays a front door (under
15,000 characters), and each docs page opens with the sentence saying what it answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())  # not headings inside code blocks
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"(?m)^#{1,6} (.*)$", text)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: {broken}"


def test_readme_is_a_front_door_and_every_docs_page_is_linked_from_it():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 15_000
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: p.name)
def test_each_docs_page_opens_with_what_it_answers(page):
    title, blank, sentence = page.read_text().splitlines()[:3]
    assert title.startswith("# ") and blank == "" and sentence.endswith("documentation.")


def fenced_commands(page: Path) -> list[str]:
    """The commands of a page's ```bash blocks: one per line, comments and continuations dropped."""
    commands = []
    for block in re.findall(r"(?ms)^```bash\n(.*?)^```", page.read_text()):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split(";") if part.strip()]
    return commands


def entry_point(command: str) -> list[str] | None:
    """What names the tool a command runs: `mnistbench X ...` and `python -m lab.X ...` -> its
    --help; `dvc A B` -> `dvc A B --help`."""
    words = re.sub(r"^([A-Z_]+=\S+ )+", "", command).split()  # DATA_MIRROR=... make pipeline
    if words[:1] == ["mnistbench"] and len(words) > 1 and not words[1].startswith(("-", "<")) and "|" not in words[1]:
        return [sys.executable, "-m", "commands", words[1], "--help"]
    if words[:2] == ["python", "-m"]:
        return [sys.executable, "-m", words[2], "--help"]
    if words[0] == "dvc":
        sub = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
        return [str(Path(sys.executable).parent / "dvc"), *sub, "--help"]
    return None


README_COMMANDS = [c for c in fenced_commands(ROOT / "README.md") if entry_point(c)]


def inline_commands(page: Path) -> list[str]:
    """Commands quoted in running text or tables: `mnistbench X ...`, `python -m lab.X ...`,
    `dvc X ...`, `time dvc X`."""
    spans = re.findall(r"`(?:time )?((?:python -m (?:lab|commands)\.|mnistbench |dvc )[^`]*)`", page.read_text())
    return [span for span in spans if not span.startswith("dvc ") or re.match(r"dvc [a-z]+", span)]


ENTRY_POINTS = {}  # each distinct tool + subcommand named in README and docs/, with the first command naming it
for _page in PAGES:
    for _command in fenced_commands(_page) + inline_commands(_page):
        if entry_point(_command):
            ENTRY_POINTS.setdefault(" ".join(entry_point(_command)[1:-1]), f"{_page.name}: {_command}")


def test_readme_names_commands_worth_checking():
    assert len(README_COMMANDS) >= 10 and all(" ".join(entry_point(c)[1:-1]) in ENTRY_POINTS for c in README_COMMANDS)


@pytest.mark.parametrize("tool", sorted(ENTRY_POINTS))
def test_every_command_in_readme_and_docs_names_a_real_entry_point_and_subcommand(tool):
    """Each fenced command's tool and subcommand, in README and docs/, exists (`--help` exits 0): a
    renamed module or a mistyped DVC subcommand fails here. Running them on data is the other tests' job."""
    command = ENTRY_POINTS[tool].split(": ", 1)[1]
    if tool.startswith("-m lab.") and not (ROOT / "lab").is_dir():
        pytest.skip("the lab is deleted: its commands went with it")
    result = subprocess.run(entry_point(command), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{ENTRY_POINTS[tool]}: {result.stderr[-500:]}"


def test_the_pipeline_page_lists_every_registered_architecture_optimizer_and_schedule_with_its_keys():
    """docs/pipeline.md's tables of the registries: a registration, or a key, added without its row fails."""
    from mnistbench import models, optim

    rows = {
        line.split(" | ")[0].strip("| `"): line
        for line in (ROOT / "docs/pipeline.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for registry in (models.MODELS, optim.OPTIMIZERS, optim.SCHEDULES):
        for name, entry in registry.entries.items():
            assert name in rows, f"docs/pipeline.md has no row for {registry.section}.{registry.choice} = {name}"
            for key in entry.keys:
                assert f"`{key}`" in rows[name], f"docs/pipeline.md: {name}'s row does not name its key {key}"
