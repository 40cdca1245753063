"""Where and how torch runs: threads, device, and the record of what decides a run's bits.

device = configure_torch(params.train.threads, params.train.device)   # torch.device
info = run_info(device)                                                # for metrics/run_info.json
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import torch

from mnistbench import portable
from mnistbench.params import ParamsError


def check_device(device: str) -> None:
    """train.device against this machine: `cuda` needs a GPU that torch sees."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("params.yaml: train.device = 'cuda' but torch sees no CUDA device; use auto or cpu")


GPU_NOTE = (
    "note: a GPU is present, and train.device auto trains on the CPU, where the committed results were made, "
    "to reproduce their bytes; `dvc exp run -S train.device=cuda` trains on the GPU: other bytes, which "
    "`mnistbench reproduced` compares with the committed results statistically"
)


def configure_torch(threads: int, device: str) -> torch.device:
    """Thread count, and deterministic kernels on CUDA; returns the device to use. `auto` is the
    CPU: the committed results are CPU bytes, and a fresh clone's `make pipeline` must reproduce
    them on any machine, a GPU machine included (docs/reproducibility.md); where a GPU is present,
    one line says so and how to use it."""
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cpu"
        if torch.cuda.is_available():
            print(GPU_NOTE, file=sys.stderr)
    check_device(device)
    if device == "cuda":
        # Only CUDA has nondeterministic kernels among the ops used here (the CPU ones are checked
        # byte for byte in CI). On the CPU the call would cost a second per stage: in torch 2.13
        # it imports the torch.compile stack.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
    return torch.device(device)


def run_info(device: torch.device) -> dict:
    """What decides the float bits of a run, and nothing else (no times, hosts or paths), so the
    file is identical wherever the same bits are produced and differs where they may not be.
    Not the CPU model or vendor: with these pins Intel and AMD give the same bits
    (docs/reproducibility.md, tests/test_portable_bits.py). The torch version fixes the MKL and
    oneDNN versions it bundles."""
    info = {
        "torch": torch.__version__.split("+")[
            0
        ],  # the release: PyTorch's CPU-only build (+cpu) gives the CUDA build's CPU bits
        "machine": platform.machine(),  # x86_64; other architectures have other kernels
        "device": device.type,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # ATen's kernels: AVX2 unless the CPU lacks it
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),  # numpy's BLAS: the estimators' kernels
        "scikit_learn": metadata.version("scikit-learn"),  # the estimators' code
        "linear": portable.describe(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        info["cuda"] = {
            "gpu": torch.cuda.get_device_name(device),
            "version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info
