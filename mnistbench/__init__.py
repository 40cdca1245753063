"""Library behind the DVC stages in stages/ and the commands `python -m mnistbench.<check|sweep|bench|predict>`.

Importing it pins the CPU code paths that change float results, before torch loads: ATen's
vectorized kernels and MKL's GEMM both take their AVX2 path, so any x86-64 CPU with AVX2 or newer
(AVX-512 included) computes the same bits. Measured here: AVX-512 vs AVX2 ATen kernels gave
different weights; the pinned paths cost no speed (0.73 s/epoch pinned, 0.75 s AVX-512). A value already in the
environment wins, and metrics/run_info.json records what was used.
"""

import os

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "AVX2")
