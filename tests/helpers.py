"""Helpers the tests share: params sections, tiny MNIST-format mirrors written in the real IDX
format (gzipped), and an end-to-end repository of this project's pipeline.

    from tests.helpers import model_params, train_params, synthetic_digits, e2e_repo

Images are synthetic but learnable: class c lights up a 6x6 block at a position that depends on
c, plus noise, so a few training steps measurably reduce the loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from mnistbench.data import RawFile, digests
from mnistbench.params import ModelParams, TrainParams, load_params

ROOT = Path(__file__).resolve().parent.parent


def model_params(arch: str | None = None, **keys) -> ModelParams:
    """params.yaml's model section (the seed's MLP), or `arch` with its section of params.yaml
    (none where it has none), its keys replaced by `keys`: only the chosen arch's section is kept."""
    model = load_params(ROOT / "params.yaml").model
    arch = arch or model.arch
    return ModelParams(arch, {arch: {**model.sections.get(arch, {}), **keys}})


def train_params(**overrides) -> TrainParams:
    """params.yaml's train section, on the CPU, with `overrides`: a new key in params.yaml needs no
    change to any test. `<entry>__<key>=value` sets a key of an optimizer's or schedule's section
    (sgd__momentum=0.9)."""
    train = load_params(ROOT / "params.yaml").train
    sections = {name: dict(keys) for name, keys in train.sections.items()}
    for name in [n for n in overrides if "__" in n]:
        entry, _, key = name.partition("__")
        sections.setdefault(entry, {})[key] = overrides.pop(name)
    return dataclasses.replace(train, device="cpu", sections=sections, **overrides)


NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 28, 28) uint8 images and (n,) int64 labels 0..9, every class present when n >= 10."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.int64)
    for i, c in enumerate(labels.tolist()):
        r, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        images[i, r : r + 6, col : col + 6] = 255
    return images.to(torch.uint8), labels


def idx_images(images: torch.Tensor) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.numpy().tobytes()


def idx_labels(labels: torch.Tensor) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.to(torch.uint8).numpy().tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def write_mirror(
    root: Path, n_train: int = 300, n_test: int = 100, dataset: str = "mnist", seed: int = 1
) -> tuple[RawFile, ...]:
    """Write `<root>/<dataset>/<4 files>`; return their checksums, as the tests' pinned table."""
    train, test = synthetic_digits(n_train, seed=seed), synthetic_digits(n_test, seed=seed + 1)
    blobs = (gz(idx_images(train[0])), gz(idx_labels(train[1])), gz(idx_images(test[0])), gz(idx_labels(test[1])))
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, blob in zip(NAMES, blobs):
        (folder / name).write_bytes(blob)
        md5, sha256 = digests(folder / name)
        files.append(RawFile(name, md5, sha256))
    return tuple(files)


def sh(repo: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def set_params(path: Path, **values) -> None:
    yaml = YAML()  # round-trip: keeps comments and layout, as a user's edit would
    tree = yaml.load(path.read_text())
    for key, value in values.items():  # train__lr, or model__mlp__hidden for an entry's own key
        *parents, name = key.split("__")
        node = tree
        for part in parents:
            node = node[part]
        node[name] = value
    with open(path, "w") as f:
        yaml.dump(tree, f)


TRACKED = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "mnistbench", "commands"]


def e2e_repo(base: Path) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """A git + DVC repository of this project's pipeline on tiny mirrors (300 training images, 2
    epochs, 3 replicates) in base/repo, after its first `dvc repro`: (repo, env for dvc, repro)."""
    repo, mirror = base / "repo", base / "mirror"
    repo.mkdir()
    for name in TRACKED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    files = write_mirror(mirror, n_train=300, n_test=100)
    fashion = write_mirror(mirror, n_train=300, n_test=100, dataset="fashion-mnist", seed=5)
    # kmnist: pinned, but in a mirror folder of its own, outside DATA_MIRROR unless a test adds it
    kmnist = write_mirror(base / "kmnist-mirror", n_train=300, n_test=100, dataset="kmnist", seed=9)
    (repo / "mnistbench" / "datasets.json").write_text(
        json.dumps(
            {
                name: {
                    "train_size": 300,
                    "test_size": 100,
                    "classes": [f"class {c}" for c in range(10)],
                    "files": {f.name: {"md5": f.md5, "sha256": f.sha256} for f in pinned},
                }
                for name, pinned in (("mnist", files), ("fashion-mnist", fashion), ("kmnist", kmnist))
            }
        )
    )
    set_params(
        repo / "params.yaml",
        prepare__val_size=50,
        train__epochs=2,
        train__device="cpu",
        evaluate__misclassified_shown=5,
        replicates__n=3,
        replicates__jobs=2,
    )

    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DATA_MIRROR=str(mirror),
        DVC_NO_ANALYTICS="1",
        GIT_CONFIG_NOSYSTEM="1",
    )
    env.pop("PYTHONPATH", None)  # stages must find the package from the repo root, as for a user
    sh(repo, env, "git", "init", "-q", "-b", "main")
    sh(repo, env, "git", "config", "user.name", "e2e test")
    sh(repo, env, "git", "config", "user.email", "e2e@example.invalid")
    sh(repo, env, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc/config", repo / ".dvc/config")  # as a clone has it: no analytics, the plots' template
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    first = sh(repo, env, "dvc", "repro")
    return repo, env, first


def workspace_bytes(repo: Path) -> dict[str, str]:
    """SHA-256 of every output of the main pipeline, and of dvc.lock: what a refused run, or a
    fault and its restore, must leave as it was."""
    files = [
        p
        for folder in ("models", "data", "metrics", "plots", "dvclive")
        for p in (repo / folder).rglob("*")
        if p.is_file()
    ]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in [*files, repo / "dvc.lock"]}


def add_remotes(repo: Path, env: dict, base: Path) -> Path:
    """A bare git remote `origin` and a default DVC remote under base, committed: all a Ray
    cluster's nodes see of the repository. Returns the bare remote's path."""
    bare = base / "origin.git"
    sh(repo, env, "git", "init", "-q", "--bare", str(bare))
    sh(repo, env, "git", "remote", "add", "origin", str(bare))
    sh(repo, env, "dvc", "remote", "add", "-d", "store", str(base / "dvc-store"))
    sh(repo, env, "git", "commit", "-qam", "remotes")
    return bare


@contextlib.contextmanager
def two_node_cluster():
    """A Ray cluster of two nodes on this machine, one CPU each; yields its address."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster.address
    finally:
        cluster.shutdown()
