"""The benchmark's protocol (mnistbench/protocol.py) on the committed benchmark/params.yaml and on
copies with one change: how many draws each kind of model gets, and each mistake one line."""

from __future__ import annotations

import pytest
import yaml

from mnistbench import estimators
from mnistbench.params import ParamsError
from mnistbench.protocol import load_protocol
from tests.helpers import ROOT

COMMITTED = ROOT / "benchmark/params.yaml"


def changed(tmp_path, key: str, value):
    tree = yaml.safe_load(COMMITTED.read_text())
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


DELETE = object()


def test_a_deterministic_estimator_is_one_draw_and_the_rest_get_seeds():
    protocol = load_protocol(COMMITTED)
    protocol.check_draws(str(COMMITTED), estimators)
    assert protocol.seeds("logreg") == [0] and protocol.seeds("knn4") == [0]  # one draw: what every seed gives
    assert len(protocol.seeds("forest")) >= 2 and len(protocol.seeds("mlp")) >= 2
    model, train = protocol.cell("knn4", "mnist")
    assert model.arch == "knn" and protocol.cells["knn4"].epochs is None and train.epochs == 1


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("model.logreg.n", 3, "model.logreg.n = 3: logreg is deterministic, every seed gives the same bits; set n: 1"),
        ("model.forest.n", 1, "model.forest.n = 1: must be 2 at least (a cell needs 2 seeds for a spread)"),
        ("model.mlp.n", 1, "model.mlp.n = 1: must be 2 at least"),
        ("model.knn4.epochs", 5, "model.knn4.epochs: knn is a scikit-learn estimator, which trains no epochs"),
        ("model.cnn.epochs", DELETE, "model.cnn.epochs: missing; cnn trains for epochs"),
        ("control.model", "logreg", "control.model = 'logreg' is one deterministic draw"),
    ],
)
def test_a_wrong_number_of_draws_is_one_line_naming_the_key(tmp_path, key, value, says):
    path = changed(tmp_path, key, value)
    with pytest.raises(ParamsError) as e:
        protocol = load_protocol(path)
        protocol.check_draws(str(path), estimators)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("models", ["linear", "resnet"], "models lists 'resnet', which has no entry under model:; add one"),
        ("model.knn.n", 0, "model.knn.n = 0: must be an integer from 1 to 1000"),  # an entry not listed: checked too
        ("model.knn.seeds", 2, "model.knn must hold n (seeds), epochs (none for a scikit-learn estimator)"),
    ],
)
def test_a_bad_entry_is_one_line_listed_or_not(tmp_path, key, value, says):
    with pytest.raises(ParamsError, match=None) as e:
        load_protocol(changed(tmp_path, key, value))
    assert says in str(e.value)


def test_a_cells_own_train_keys_go_over_the_shared_ones_a_section_key_by_key(tmp_path):
    """pytorch/examples' recipe as a cell: Adadelta at lr 1.0 and StepLR, over the shared Adam."""
    from mnistbench import optim

    own = {"optimizer": "adadelta", "lr": 1.0, "adadelta": {"rho": 0.9, "weight_decay": 0.0}, "schedule": "steplr",
           "steplr": {"step_size": 1, "gamma": 0.7}, "adam": {"weight_decay": 0.5}}  # fmt: skip
    path = changed(tmp_path, "model.cnn.train", own)
    protocol = load_protocol(path)
    _, train = protocol.cell("cnn", "mnist")
    _, shared = protocol.cell("mlp", "mnist")
    assert (train.optimizer, train.lr, train.schedule) == ("adadelta", 1.0, "steplr")
    assert train.sections["steplr"] == {"step_size": 1, "gamma": 0.7} and train.sections["adam"]["weight_decay"] == 0.5
    assert (shared.optimizer, shared.lr, shared.sections["adam"]["weight_decay"]) == ("adam", 0.001, 0.0)
    assert train.batch_size == shared.batch_size and train.seed == shared.seed  # the rest: the shared keys
    optim.check(train, "cell")
    assert (
        optim.build_optimizer(train, [__import__("torch").zeros(1, requires_grad=True)]).__class__.__name__
        == "Adadelta"
    )


@pytest.mark.parametrize(
    "own, says",
    [
        ({"seed": 5}, "model.cnn.train.seed: the protocol's for every cell (train.seed); not a cell's own"),
        ({"threads": 2}, "model.cnn.train.threads: the protocol's for every cell"),
        ({"learning_rate": 0.1}, "model.cnn.train.learning_rate: train has no such key; a cell's own: batch_size, "),
        ({"lr": "fast"}, "model.cnn.train.lr"),
        ({"adam": 0.1}, "model.cnn.train.adam: must be a mapping, as train.adam"),
        ([1], "model.cnn.train must be a mapping of train's keys"),
    ],
)
def test_a_bad_own_train_key_is_one_line_naming_it(tmp_path, own, says):
    with pytest.raises(ParamsError) as e:
        load_protocol(changed(tmp_path, "model.cnn.train", own))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_an_unregistered_optimizer_of_a_cell_is_one_line_naming_the_cell(tmp_path):
    from mnistbench import optim

    protocol = load_protocol(changed(tmp_path, "model.cnn.train", {"optimizer": "lion"}))
    with pytest.raises(ParamsError) as e:
        optim.check(protocol.cell("cnn", "mnist")[1], "benchmark/params.yaml: model.cnn.train")
    assert "benchmark/params.yaml: model.cnn.train: " in str(e.value) and "lion" in str(e.value)


def test_an_estimator_reads_no_train_keys(tmp_path):
    path = changed(tmp_path, "model.forest.train", {"lr": 0.1})
    with pytest.raises(ParamsError) as e:
        load_protocol(path).check_draws(str(path), estimators)
    assert "model.forest.train: forest is a scikit-learn estimator, which reads no training keys" in str(e.value)
