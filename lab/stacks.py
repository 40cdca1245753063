"""Which stacks reproduce the committed results, and in which tier: each run as a user would, in a
fresh clone of HEAD, and judged by `mnistbench reproduced` (commands/reproduced.py).

    DATA_MIRROR=$(realpath ../shared/datasets) python -m lab.stacks               # every case, about 30 minutes
    DATA_MIRROR=$(realpath ../shared/datasets) python -m lab.stacks --case python3.13 --case lock

The cases (a case not run keeps its last recorded result):
  python3.11, python3.12, python3.13  `make pipeline PYTHON=pythonX` in a fresh clone (the lock's own
                                      wheels for that Python), then `mnistbench reproduced`;
  torch-cpu                           PyTorch's CPU-only build of the locked release, in the 3.11 clone;
  torch-next                          the next torch release on this machine (2.14.1): tier 2 expected;
  kernels                             ATen unvectorized, MKL and oneDNN unpinned (the environment wins
                                      over mnistbench's pins): another kernel path, tier 2;
  lock                                whether every wheel requirements.txt pins, with its hash, exists
                                      for Linux aarch64 and macOS arm64 (PyPI's JSON API), Python 3.11-3.13.
Writes lab/records/stacks.json; `python -m lab.render` puts it into docs/reproducibility.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lab import record
from mnistbench.entry import run_command
from mnistbench.mirrors import absolute, parse_mirrors

ROOT = Path(__file__).resolve().parent.parent
CASES = ("python3.11", "python3.12", "python3.13", "torch-cpu", "torch-next", "kernels", "lock")
CPU_WHEEL = (
    "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"  # what `pip install torch==2.13.0` takes here
)
NEXT_TORCH = "torch==2.14.1"
KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL"}
PLATFORMS = {  # name: (sys_platform, platform_machine, unused)
    "Linux aarch64": ("linux", "aarch64", None),
    "macOS arm64": ("darwin", "arm64", None),
}


def sh(cwd: Path, *cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def must(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        raise SystemExit(f"stacks: error: {what} failed: {(done.stderr or done.stdout).strip()[-600:]}")
    return done


def clone(base: Path, name: str) -> Path:
    path = base / name
    must(sh(base, "git", "clone", "-q", str(ROOT), str(path)), "git clone")
    return path


def judged(path: Path, env: dict) -> dict:
    """`mnistbench reproduced` in the clone: its tier, its exit status and what it printed."""
    done = sh(path, ".venv/bin/mnistbench", "reproduced", env=env)
    out = (done.stdout + done.stderr).strip()
    tier = re.search(r"tier (\d)", out)
    result = {"exit": done.returncode, "tier": int(tier.group(1)) if tier else None, "said": out.splitlines()[0]}
    rows = [line for line in out.splitlines() if line.startswith("| replicates |")]
    if rows:
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        result["replicates"] = dict(zip(("committed", "here", "difference", "margin", "p", "verdict"), cells[1:]))
    result["verdict"] = out.splitlines()[-1]
    return result


def interpreter(version: str) -> str | None:
    """A `pythonX.Y` that runs: on PATH, or pyenv's (whose shims refuse a version not selected)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in [version, *sorted(str(p) for p in pyenv.glob(f"versions/{version[6:]}*/bin/{version}"))]:
        if shutil.which(candidate) and sh(ROOT, candidate, "--version").returncode == 0:
            return candidate
    return None


def python_case(base: Path, env: dict, version: str) -> dict:
    python = interpreter(version)
    if python is None:
        return {"stack": f"Python {version[6:]}", "skipped": f"no {version} runs on this machine"}
    path = clone(base, version)
    started = time.perf_counter()
    must(sh(path, "make", "pipeline", f"PYTHON={python}", env=env), f"make pipeline PYTHON={python}")
    seconds = time.perf_counter() - started
    versions = sh(path, ".venv/bin/python", "-c", "import numpy, torch; print(numpy.__version__, torch.__version__)")
    numpy_version, torch_version = versions.stdout.split()
    status = sh(path, "git", "status", "--porcelain").stdout.strip()
    return {
        "stack": f"Python {version[6:]}: numpy {numpy_version}, torch {torch_version}",
        "how": f"fresh clone, `make pipeline PYTHON={version}`, `mnistbench reproduced`",
        "seconds": round(seconds),
        "clean_tree": status == "",
        **judged(path, env),
    }


def in_clone(path: Path, env: dict, what: str, setup: list[list[str]], repro: list[str], extra_env=None) -> dict:
    """A variant of the 3.11 clone's stack: set it up, rerun, judge, and put the clone back."""
    for cmd in setup:
        must(sh(path, *cmd, env=env), " ".join(cmd))
    run_env = dict(env, **(extra_env or {}))
    must(sh(path, *repro, env=run_env), " ".join(repro))
    result = {
        "stack": what,
        "how": " then ".join([*(" ".join(c) for c in setup), " ".join(repro)]),
        **judged(path, env),
    }
    sh(path, "git", "checkout", "HEAD", "--", "dvc.lock", "metrics", "plots", "dvclive")
    sh(path, ".venv/bin/dvc", "checkout", "--force", "-q")
    return result


def files(name: str) -> list[dict]:
    """Every file PyPI holds for a project, with its sha256 (the simple API, JSON form)."""
    request = urllib.request.Request(
        f"https://pypi.org/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["files"]


def target_tags(platform_name: str, python: tuple[int, int]) -> set:
    from packaging import tags

    if platform_name == "macOS arm64":
        platforms = list(tags.mac_platforms((14, 0), "arm64"))
    else:
        platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(39, 16, -1)]
        platforms += ["manylinux2014_aarch64", "linux_aarch64"]
    return set(tags.cpython_tags(python, platforms=platforms)) | set(
        tags.compatible_tags(python, f"cp{python[0]}{python[1]}", platforms)
    )


def lock_case() -> dict:
    """For each platform and Python, each requirement the lock selects there (its markers): a wheel
    that installs there, or an sdist, whose sha256 the lock lists. The first missing one is named."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import parse_wheel_filename

    text = (ROOT / "requirements.txt").read_text()
    entries = re.findall(r"(?m)^(\S+==[^\s;\\]+)(?: ; ([^\\\n]+?))? \\\n((?:\s+--hash=sha256:\w+(?: \\)?\n)+)", text)
    cache: dict[str, list[dict]] = {}
    results = {}
    for platform_name, (sys_platform, machine, _) in PLATFORMS.items():
        for python in ((3, 11), (3, 12), (3, 13)):
            env = {
                **default_environment(),
                "sys_platform": sys_platform,
                "platform_machine": machine,
                "platform_system": {"linux": "Linux", "darwin": "Darwin"}[sys_platform],
                "python_version": f"{python[0]}.{python[1]}",
                "python_full_version": f"{python[0]}.{python[1]}.0",
            }
            wanted = target_tags(platform_name, python)
            missing = []
            for pin, marker, hashes in entries:
                requirement = Requirement(pin + (f" ; {marker}" if marker else ""))
                if requirement.marker and not requirement.marker.evaluate(env):
                    continue
                listed = set(re.findall(r"sha256:(\w+)", hashes))
                candidates = cache.setdefault(requirement.name, files(requirement.name))
                usable = False
                for f in candidates:
                    if f.get("hashes", {}).get("sha256") not in listed:
                        continue
                    if not f["filename"].endswith(".whl"):
                        usable = True  # an sdist: builds there, given a compiler
                        break
                    if set(parse_wheel_filename(f["filename"])[3]) & wanted:
                        usable = True
                        break
                if not usable:
                    missing.append(pin)
            key = f"{platform_name}, Python {python[0]}.{python[1]}"
            results[key] = (
                "every pinned requirement has a wheel there" if not missing else "no wheel: " + ", ".join(missing)
            )
    return {
        "stack": "the lock on other platforms",
        "how": "PyPI's files against requirements.txt's hashes",
        "platforms": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=CASES, help="run only these (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the clones (printed) for a look")
    args = parser.parse_args()
    cases = args.case or list(CASES)
    roots = parse_mirrors(os.environ.get("DATA_MIRROR"))
    if not roots:
        raise SystemExit(
            "stacks: error: set DATA_MIRROR to the folder(s) holding mnist/ (absolute), as for make pipeline"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", *KERNELS)}
    env["DATA_MIRROR"] = absolute(os.environ["DATA_MIRROR"])
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)  # each clone's own venv
    try:
        figures = dict(record.load("stacks")["figures"])
    except record.RecordError:
        figures = {}
    base = Path(tempfile.mkdtemp(prefix="stacks-"))
    try:
        for version in ("python3.11", "python3.12", "python3.13"):
            if version in cases or (version == "python3.11" and {"torch-cpu", "torch-next", "kernels"} & set(cases)):
                print(f"stacks: {version} ...", file=sys.stderr, flush=True)
                result = python_case(base, env, version)
                if version in cases:
                    figures[version] = result
        reference = base / "python3.11"
        venv_env = dict(env, PATH=f"{reference / '.venv/bin'}:{env['PATH']}", VIRTUAL_ENV=str(reference / ".venv"))
        if "kernels" in cases:
            print("stacks: kernels ...", file=sys.stderr, flush=True)
            figures["kernels"] = in_clone(
                reference,
                venv_env,
                "another kernel path: " + ", ".join(f"{k}={v}" for k, v in KERNELS.items()),
                [],
                ["dvc", "repro", "-f", "train", "replicates"],
                KERNELS,
            )
        if "torch-cpu" in cases:
            print("stacks: torch-cpu ...", file=sys.stderr, flush=True)
            figures["torch-cpu"] = in_clone(
                reference,
                venv_env,
                "torch 2.13.0+cpu: PyTorch's CPU-only build of the locked release",
                [[".venv/bin/pip", "install", "-q", "--no-deps", "--force-reinstall", CPU_WHEEL]],
                ["dvc", "repro", "-f"],
            )
        if "torch-next" in cases:
            print("stacks: torch-next ...", file=sys.stderr, flush=True)
            figures["torch-next"] = in_clone(
                reference,
                venv_env,
                f"{NEXT_TORCH.replace('==', ' ')}: the next release",
                [[".venv/bin/pip", "install", "-q", "--no-deps", NEXT_TORCH]],
                ["dvc", "repro", "-f", "train", "replicates"],
            )
        if "lock" in cases:
            print("stacks: lock ...", file=sys.stderr, flush=True)
            figures["lock"] = lock_case()
    finally:
        if args.keep:
            print(f"stacks: the clones are in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    path = record.write("stacks", figures)
    print(json.dumps(figures, indent=1))
    print(f"stacks: {path}")


if __name__ == "__main__":
    run_command("stacks", main)
