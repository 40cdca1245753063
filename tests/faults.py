"""Faults injected into a real `dvc repro`, as tests/test_fault_battery.py injects them and as the
lab measures them (`python -m lab.faults`): a signal to a stage, to dvc, or to the whole process
group as a terminal's Ctrl-C sends it; a worker killed as the OOM killer kills; an output folder on
a full or read-only file system. Each scenario returns what a user would see and what was left:

    result = run(repo, env, Scenario("replicates", "sigint to the group"))
    result.seconds_to_exit, result.left, result.temp_files, result.lines

Processes are followed by id: every process under the run's dvc is recorded as it appears (the
replicates' workers start seconds after their stage), and after the fault each recorded id is
checked, not a name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from mnistbench.entry import SHELLS

GRACE = 2.0  # seconds every process of a run has to end after the fault
WORKERS_START = 5.0  # seconds for the replicates' workers to import torch and be training


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a live process, or None when it is gone (or a zombie: dead, unreaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[1]), fields[0]) if fields[0] != "Z" else None


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _shell(pid: int) -> bool:
    return Path(cmdline(pid).split(" ", 1)[0]).name in SHELLS


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Watch(threading.Thread):
    """Records every process under `root` while it runs (every 20 ms), and each one's command line."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.seen, self.commands, self.done = root, {root}, {}, threading.Event()
        self.lock = threading.Lock()  # seen grows in this thread while the test's thread reads it

    def run(self) -> None:
        while not self.done.wait(0.02):
            for pid in descendants(self.root) - set(self.commands):
                with self.lock:
                    self.seen.add(pid)
                self.commands[pid] = cmdline(pid)

    def alive(self) -> set[int]:
        """The processes seen so far that are still alive."""
        with self.lock:
            seen = set(self.seen)
        return {pid for pid in seen if _stat(pid) is not None}

    def stage(self, name: str) -> int | None:
        """The pid of the stage `name`'s own process, the Python running `-m stages.<name>`: dvc's
        child, or its grandchild where the shell dvc ran it with stayed in between (dash)."""
        return next(
            (
                p
                for p in sorted(self.alive())
                if f"-m stages.{name} " in cmdline(p)
                and not _shell(p)
                and (s := _stat(p))
                and (s[0] == self.root or (_shell(s[0]) and (_stat(s[0]) or (0,))[0] == self.root))
            ),
            None,
        )

    def workers(self, name: str) -> set[int]:
        """The stage's worker processes (spawned by multiprocessing; not its resource tracker). The
        command line is read now: a child just forked still shows its parent's."""
        stage = self.stage(name)
        return {p for p in self.alive() if stage and (s := _stat(p)) and s[0] == stage and "spawn_main" in cmdline(p)}


@dataclasses.dataclass(frozen=True)
class Scenario:
    stage: str  # train, evaluate, replicates or benchmark_cell: the stage module's name
    fault: str  # one of FAULTS
    target: str | None = None  # what `dvc repro` is given (default: the stage), e.g. benchmark/dvc.yaml:cell@mlp-mnist


WITH_WORKERS = ("replicates", "benchmark_cell")  # the stages whose seeds train in worker processes


FAULTS = ("sigkill the stage", "sigterm the stage", "sigint to the group", "sigterm dvc", "kill a worker")
LONG = {  # params edits that keep each stage running until the fault, rerunning it alone under `dvc repro <stage>`
    "train": (("train__epochs", 100_000),),
    "evaluate": (("evaluate__batch_size", 7),),  # a few seconds: the fault lands in its imports or scoring
    # a seed that never ends: a worker that outlived its stage would train on for good
    "replicates": (("replicates__n", 4), ("train__epochs", 100_000)),
    "replicates, cnn": (
        ("replicates__n", 4),
        ("train__epochs", 100_000),
        ("model__arch", "cnn"),
        ("model__cnn__channels", [4]),
        ("model__cnn__hidden", [8]),
    ),
}
CASES = [
    (stage, fault) for stage in LONG for fault in FAULTS if fault != "kill a worker" or stage.startswith("replicates")
]


@dataclasses.dataclass
class Result:
    returncode: int | None
    seconds_to_exit: float  # from the fault to the end of dvc's process
    seconds_to_clean: float  # from the fault to the end of the last process of the run
    left: set[int]  # processes of the run alive GRACE seconds after the fault
    temp_files: list[str]  # .*.tmp files left in the repository's outputs
    lines: list[str]  # what dvc and the stage printed after the fault
    processes: int  # how many processes the run had, dvc included


def temp_files(repo: Path) -> list[str]:
    return sorted(
        str(p.relative_to(repo))
        for folder in ("models", "data", "metrics", "plots", "dvclive", "benchmark")
        for p in (repo / folder).rglob(".*.tmp")
    )


def _ready(watch: Watch, scenario: Scenario, line: str) -> bool:
    """Whether the stage is under way, at the point the fault should strike."""
    if scenario.stage == "train":
        return line.startswith("epoch")  # an epoch is done: training, mid-run
    if scenario.stage in WITH_WORKERS and line.startswith(f"> python -m stages.{scenario.stage} "):
        deadline = time.monotonic() + 30  # its workers start, import torch, and train a seed that never ends
        while not watch.workers(scenario.stage) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(WORKERS_START)
        return True
    if scenario.stage not in WITH_WORKERS and line.startswith(f"> python -m stages.{scenario.stage} "):
        deadline = time.monotonic() + 10  # dvc starts it: catch its process, then let it into its imports
        while watch.stage(scenario.stage) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        return True
    return False


def run(repo: Path, env: dict, scenario: Scenario, timeout: float = 120) -> Result:
    """`dvc repro <stage>` in its own session (as a terminal runs a command in its own process
    group), the fault injected once the stage is under way, then everything measured."""
    process = subprocess.Popen(
        ["dvc", "repro", scenario.target or scenario.stage],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watch = Watch(process.pid)
    watch.start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in process.stdout:
            lines.append(line)
            if _ready(watch, scenario, line):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{scenario}: the stage never got under way")
        else:
            raise AssertionError(f"{scenario}: dvc ended before the fault: {lines}")
        watch.join(0.1)
        before = watch.alive()
        lines.clear()  # from here on: what the fault made them print
        started = time.monotonic()
        inject(process, watch, scenario)
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        code = process.wait(timeout=60)
        exited = time.monotonic() - started
        while watch.alive() and time.monotonic() - started < GRACE:
            time.sleep(0.01)
        clean = time.monotonic() - started
        left = watch.alive()
        reader.join(5)
        return Result(
            code,
            round(exited, 3),
            round(clean, 3),
            left,
            temp_files(repo),
            [line.rstrip("\n") for line in lines],
            len(before),
        )
    finally:
        watch.done.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever happened, nothing of it stays
        for pid in watch.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def inject(process: subprocess.Popen, watch: Watch, scenario: Scenario) -> None:
    stage = watch.stage(scenario.stage)
    assert stage is not None, f"{scenario}: no process of stage {scenario.stage}"
    if scenario.fault == "sigkill the stage":  # kill -9, or the OOM killer choosing the stage
        os.kill(stage, signal.SIGKILL)
    elif scenario.fault == "sigterm the stage":  # kill, a CI timeout or systemd signalling the stage
        os.kill(stage, signal.SIGTERM)
    elif scenario.fault == "sigint to the group":  # Ctrl-C in a terminal: the whole foreground group
        os.killpg(process.pid, signal.SIGINT)
    elif scenario.fault == "sigterm dvc":  # `timeout 60 dvc repro`: the signal reaches dvc alone
        os.kill(process.pid, signal.SIGTERM)
    elif scenario.fault == "kill a worker":  # the OOM killer choosing a replicates worker
        workers = sorted(watch.workers(scenario.stage))
        assert workers, f"{scenario}: no worker to kill"
        os.kill(workers[0], signal.SIGKILL)
    else:
        raise ValueError(scenario.fault)


RESTORE = re.compile(r"`([^`]+)` brings back the last committed results")


def restore_command(lines: list[str]) -> str | None:
    """The restore command a failed stage printed, if it printed one."""
    return next((m.group(1) for line in lines if (m := RESTORE.search(line))), None)


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A tmpfs mounted on `folder` (-o options: size=64k for a full disk, ro for a read-only one),
    unmounted afterwards; raises OSError where this machine cannot mount (no root, no CAP_SYS_ADMIN)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def can_mount(base: Path) -> bool:
    try:
        with mounted(base / ".mount-probe", "size=4k"):
            return True
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        with contextlib.suppress(OSError):
            (base / ".mount-probe").rmdir()
