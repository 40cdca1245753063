"""The short training runs that tests/test_portable_bits.py repeats on several CPUs (natively and
under qemu-x86_64): prints one JSON line, {run: sha256 of the state_dict's bytes and of the
history}. Run as a script, from any directory: `python tests/bits_workload.py`.

Small enough for emulation (about 130x slower) yet touching every kernel the default MLP and the
CNN train and score with: two full batches of 64 and a last one of 24 (152 images), one epoch,
validation on 40 images; the MLP at 1 and 2 threads; the CNN with channels (8, 16), which takes
the same oneDNN kernels as the default (32, 64) at a sixteenth of the work (ONEDNN_VERBOSE=1
lists the same implementations for both).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS.parent))  # the repository: mnistbench and tests.helpers

import mnistbench  # noqa: E402,F401,I001  (pins the kernels before torch and numpy load: OpenBLAS reads its pin then)
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mnistbench import estimators, models  # noqa: E402
from mnistbench.data import normalize  # noqa: E402
from mnistbench.train import fit  # noqa: E402
from tests.helpers import model_params, synthetic_digits, train_params  # noqa: E402


@models.register("plain")
class Plain(nn.Module):
    """A user's architecture as they would write it: plain nn.Linear layers, no PortableLinear
    named anywhere; build_model converts them (mnistbench/portable.py)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


@models.register("batchnorm")
class WithBatchNorm(nn.Module):
    """docs/extending.md's residual MLP in small: BatchNorm1d runs torch's own CPU kernels."""

    def __init__(self):
        super().__init__()
        self.stem, self.block = nn.Linear(784, 64), nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.block(x))


RUNS = {  # name: (model overrides, threads)
    "mlp, 1 thread": ({}, 1),
    "mlp, 2 threads": ({}, 2),
    "cnn (8, 16), 1 thread": ({"arch": "cnn", "channels": (8, 16)}, 1),
    "plain nn.Linear layers, 1 thread": ({"arch": "plain"}, 1),
    "BatchNorm1d in a residual block, 1 thread": ({"arch": "batchnorm"}, 1),
    "scikit-learn logreg": ({"arch": "logreg"}, 1),
    "scikit-learn knn": ({"arch": "knn"}, 1),
    "scikit-learn forest": ({"arch": "forest", "n_estimators": 20}, 1),
}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    mean, std = 0.1307, 0.3081
    train = synthetic_digits(152, seed=1)
    val = synthetic_digits(40, seed=2)
    train, val = (normalize(train[0], mean, std), train[1]), (normalize(val[0], mean, std), val[1])
    out = {}
    for name, (overrides, threads) in RUNS.items():
        torch.set_num_threads(threads)
        params = train_params(
            seed=0, epochs=1, batch_size=64, lr=0.001, normalize_mean=mean, normalize_std=std, threads=threads
        )
        model, history, _ = fit(model_params(**overrides), params, train, val, torch.device("cpu"), log=lambda _: None)
        if isinstance(model, estimators.Estimator):  # its fitted state, as the checkpoint holds it
            weights = estimators.dumps(model).numpy().tobytes()
        else:
            weights = b"".join(t.contiguous().numpy().tobytes() for t in model.state_dict().values())
        out[name] = {"state_dict": digest(weights), "history": digest(repr(history).encode())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
