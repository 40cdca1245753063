"""The same bytes on Intel and AMD: short training runs natively and under qemu-x86_64 emulating an
Intel (Haswell) and an AMD (EPYC-Rome) CPU, with the project's pins, must give identical weights.

Each CPU is one subprocess running tests/bits_workload.py (one torch import each: about 30 s under
emulation), the emulated ones side by side; about 1-2 minutes in all. qemu-user's TCG emulates
AVX2 but not AVX-512, so AVX-512 machines are covered by the pins (ATen, oneDNN and MKL never take
their AVX-512 paths), not by this test. Needs `apt-get install qemu-user`; skips without it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WORKLOAD = Path(__file__).resolve().parent / "bits_workload.py"
EMULATED = ("Haswell", "EPYC-Rome")  # Intel AVX2 (as Xeon E5 v3 runners), AMD Zen 2
PINS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
QEMU = shutil.which("qemu-x86_64")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates x86-64 CPUs: needs an x86-64 host"),
    pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 is not installed (apt-get install qemu-user)"),
]


def run_workload(cpu: str | None) -> dict:
    """The workload's digests natively (cpu None) or under qemu-x86_64 -cpu <cpu>."""
    env = {k: v for k, v in os.environ.items() if k not in PINS}  # the project's own pins, as a user gets them
    cmd = [sys.executable, str(WORKLOAD)]
    if cpu is not None:
        cmd = [QEMU, "-cpu", cpu, *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, (
        f"{cpu or 'native'}: exit {result.returncode}\n"
        + "\n".join(line for line in result.stderr.splitlines() if "TCG doesn't support" not in line)[-3000:]
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_training_gives_the_same_bytes_natively_and_on_emulated_intel_and_amd_cpus():
    with ThreadPoolExecutor(max_workers=len(EMULATED)) as pool:
        emulated = dict(zip(EMULATED, pool.map(run_workload, EMULATED)))
    native = run_workload(None)
    assert set(native) == {
        "mlp, 1 thread",
        "mlp, 2 threads",
        "cnn (8, 16), 1 thread",
        "plain nn.Linear layers, 1 thread",
        "BatchNorm1d in a residual block, 1 thread",
        "scikit-learn logreg",
        "scikit-learn knn",
        "scikit-learn forest",
    }
    for cpu, digests in emulated.items():
        differing = [run for run in native if digests.get(run) != native[run]]
        assert not differing, f"{cpu} (emulated) gave other bytes than this CPU for: {differing}"
