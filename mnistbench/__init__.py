"""The library the pipeline runs: what the stages in stages/ import, and nothing else (dvc.yaml
lists each module among the deps of the stages that import it). The commands (commands/) and the
lab (lab/) import it too; it imports neither.

Importing it pins, before torch loads, the CPU code paths that change float results, so that any
x86-64 CPU with AVX2 or newer, Intel or AMD, AVX-512 included, computes the same bits:
  ATEN_CPU_CAPABILITY=avx2   ATen's vectorized kernels (AVX-512 ones gave other weights; same speed);
  ONEDNN_MAX_CPU_ISA=AVX2    oneDNN's kernels: the CNN's convolutions and the large linear layers
                             (mnistbench/portable.py), which would take AVX-512 or AMX code where present;
  MKL_CBWR=COMPATIBLE        MKL's GEMM, which the small linear layers use: AVX2 is not enough,
                             since MKL ignores the branch on AMD CPUs and runs other kernels there than
                             on Intel ones (mnistbench/portable.py has the measurements);
  OPENBLAS_CORETYPE=Haswell  numpy's and scipy's OpenBLAS, which the scikit-learn estimators use:
                             it picks its kernels by CPU (SkylakeX with AVX-512, Zen, Haswell), and
                             the logistic regression's lbfgs gave other bytes under an emulated
                             Haswell than on an AVX-512 Xeon until pinned (tests/test_portable_bits.py).
                             Read when OpenBLAS loads: import mnistbench before numpy.
A value already in the environment wins, and metrics/run_info.json records what was used.
"""

import os

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
