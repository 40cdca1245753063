"""scikit-learn estimators as architectures (mnistbench/estimators.py): registered with keys of their
own, checked by scikit-learn before any training, fitted by the train stage's fit, scored as any
model, seeded where randomized, trained once where not, checkpointed as skops bytes that are the
same for the same fit and that load no type but scikit-learn's and numpy's."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from mnistbench import estimators, models
from mnistbench.data import normalize
from mnistbench.files import FileFormatError
from mnistbench.models import load_checkpoint, save_checkpoint
from mnistbench.params import ParamsError
from mnistbench.registry import key
from mnistbench.replicates import seeds_to_train, summarize
from mnistbench.stats import total_interval
from mnistbench.train import fit
from tests.helpers import ROOT, model_params, synthetic_digits, train_params

torch.set_num_threads(1)


def splits():
    train, val = synthetic_digits(200, seed=1), synthetic_digits(60, seed=2)
    return (normalize(train[0], 0.1307, 0.3081), train[1]), (normalize(val[0], 0.1307, 0.3081), val[1])


def trained(arch: str, seed: int = 0, **keys):
    train, val = splits()
    model, history, seconds = fit(
        model_params(arch, **keys), train_params(seed=seed), train, val, torch.device("cpu"), log=lambda _: None
    )
    return model, history, val


REGISTERED = [name for name in models.MODELS.entries if estimators.is_estimator(name)]


@pytest.mark.parametrize("arch", REGISTERED)
def test_an_estimator_is_fitted_once_scored_and_checkpointed_to_the_same_bytes(tmp_path, arch):
    model, history, (x, y) = trained(arch)
    assert isinstance(model, estimators.Estimator)
    assert [row["epoch"] for row in history] == [1] and history[0]["val_accuracy"] > 0.5
    logits = model(x)
    assert logits.shape == (len(y), 10) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert torch.equal(logits.argmax(1), torch.from_numpy(model.pipeline.predict(x.numpy())))
    assert models.learned_numbers(model) > 0
    for name in ("a.pt", "b.pt"):
        save_checkpoint(tmp_path / name, model, model_params(arch), mean=0.1307, std=0.3081)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()  # skops' ids and times removed
    loaded, normalize_ = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(loaded(x), logits) and normalize_ == {"mean": 0.1307, "std": 0.3081}


def test_the_checkpoint_bytes_are_the_same_in_another_process(tmp_path):
    """skops names objects by their memory address: a fresh process must still write the same bytes."""
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[2]); from tests.test_estimators import trained; "
        "from mnistbench.models import save_checkpoint; from tests.helpers import model_params; "
        "from pathlib import Path; "
        "torch.set_num_threads(1); save_checkpoint(Path(sys.argv[1]), trained('logreg')[0], model_params('logreg'), "
        "0.1307, 0.3081)"
    )
    for name in ("one.pt", "two.pt"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name), str(ROOT)], check=True)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()


def test_a_randomized_estimator_takes_the_seed_as_its_random_state():
    x = splits()[1][0]
    first, again, other = (trained("forest", seed=s, n_estimators=10)[0] for s in (0, 0, 1))
    assert torch.equal(first(x), again(x)) and not torch.equal(first(x), other(x))
    assert first.pipeline.random_state == 0 and other.pipeline.random_state == 1


def test_a_deterministic_estimator_trains_one_seed_and_its_summary_is_that_draw():
    seeds = [4, 5, 6]
    assert seeds_to_train(model_params("knn"), seeds) == [4]
    assert seeds_to_train(model_params("forest"), seeds) == seeds
    assert seeds_to_train(model_params(), seeds) == seeds  # a torch model: every seed
    summary = summarize([0.9])
    assert summary["n"] == 1 and summary["sd"] == 0.0 and summary["ci95_low"] == summary["ci95_high"] == 0.9
    correct = (np.arange(1000) % 10 != 0)[None, :]  # one draw, 90% right: the test set's interval alone
    interval = total_interval(correct)
    half = 1.96 * np.sqrt(0.9 * 0.1 / 1000)
    assert interval.low == pytest.approx(0.9 - half, abs=2e-4) and interval.high == pytest.approx(0.9 + half, abs=2e-4)


@pytest.mark.parametrize(
    "arch, keys, says",
    [
        ("knn", {"n_neighbors": 0}, "model.knn.n_neighbors = 0: scikit-learn refused it: The 'n_neighbors' parameter"),
        ("knn", {"weights": "heavy"}, "model.knn.weights = 'heavy': scikit-learn refused it: The 'weights' parameter"),
        ("forest", {"max_depth": 0}, "model.forest.max_depth = 0: scikit-learn refused it: The 'max_depth' parameter"),
        ("logreg", {"C": -1.0}, "model.logreg.C = -1.0: scikit-learn refused it: The 'C' parameter"),
        ("svc", {"kernel": "cubic"}, "model.svc.kernel = 'cubic': scikit-learn refused it: The 'kernel' parameter"),
        ("sk_mlp", {"activation": "gelu"}, "model.sk_mlp.activation = 'gelu': scikit-learn refused it"),
    ],
)
def test_a_value_scikit_learn_rejects_is_refused_in_one_line_naming_the_key(arch, keys, says):
    with pytest.raises(ParamsError) as refused:
        estimators.check(model_params(arch, **keys))
    assert str(refused.value).startswith(f"params.yaml: {says}") and "\n" not in str(refused.value)


def test_validate_refuses_what_scikit_learn_rejects_before_any_stage_runs(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("model:\n  arch: mlp", "model:\n  arch: knn")
    (tmp_path / "params.yaml").write_text(text.replace("    n_neighbors: 5", "    n_neighbors: 0"))
    result = subprocess.run(
        [sys.executable, "-m", "stages.validate", "--out", "data/params.ok"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "validate: error: params.yaml: model.knn.n_neighbors = 0: scikit-learn refused it: The 'n_neighbors' "
        "parameter of KNeighborsClassifier must be an int in the range [1, inf)"
    )
    assert not (tmp_path / "data").exists()


def test_a_registered_estimator_with_keys_of_its_own_needs_no_other_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(models.MODELS, "entries", dict(models.MODELS.entries))  # undone after

    @estimator_of_test
    def centroid(shrink: float):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrink)

    model, _, (x, _) = trained("centroid", shrink=0.5)
    assert model.pipeline.shrinkage == 0.5 and seeds_to_train(model_params("centroid", shrink=0.5), [1, 2]) == [1]
    save_checkpoint(tmp_path / "c.pt", model, model_params("centroid", shrink=0.5), mean=0.1, std=0.2)
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")[0](x), model(x))


def estimator_of_test(build):
    return estimators.estimator("centroid", randomized=False, shrink=key(float, "shrinkage"))(build)


def test_a_checkpoint_whose_estimator_would_rebuild_another_type_is_refused_without_running_it(tmp_path, monkeypatch):
    """skops would rebuild a FunctionTransformer holding os.system only if told to trust it: the
    checkpoint's loader trusts scikit-learn's and numpy's types alone."""
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model, _, _ = trained("logreg")
    save_checkpoint(tmp_path / "m.pt", model, model_params("logreg"), mean=0.1, std=0.2)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    evil = make_pipeline(FunctionTransformer(os.system), model.pipeline)
    ckpt["estimator"] = torch.frombuffer(bytearray(skops.io.dumps(evil)), dtype=torch.uint8)
    torch.save(ckpt, tmp_path / "evil.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileFormatError, match=r"evil\.pt: refused to load checkpoint: its estimator asks to rebuild"):
        load_checkpoint(tmp_path / "evil.pt")


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_estimator_in_a_checkpoint_is_one_line(tmp_path, damage):
    model, _, _ = trained("knn")
    save_checkpoint(tmp_path / "m.pt", model, model_params("knn"), mean=0.1, std=0.2)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    if damage == "missing":
        del ckpt["estimator"]
    else:
        ckpt["estimator"] = ckpt["estimator"][:1000].clone()
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(FileFormatError, match=r"bad\.pt: (its estimator is unreadable|a checkpoint of the estimator)"):
        load_checkpoint(tmp_path / "bad.pt")


def test_canonical_keeps_what_skops_loads():
    import skops.io

    model, _, (x, _) = trained("forest", n_estimators=5)
    raw = skops.io.dumps(model.pipeline)
    fixed = estimators.canonical(raw)
    assert fixed == estimators.canonical(skops.io.dumps(model.pipeline))
    names = sorted(zipfile.ZipFile(io.BytesIO(fixed)).namelist())
    assert "schema.json" in names and all(n == "schema.json" or n[:-4].isdigit() and len(n) < 12 for n in names)
    again = skops.io.loads(fixed, trusted=skops.io.get_untrusted_types(data=fixed))
    assert np.array_equal(again.predict_proba(x.numpy()), model.pipeline.predict_proba(x.numpy()))
