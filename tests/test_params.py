import hashlib
import io
import os
import re
import subprocess
import sys

import pytest
import torch
from ruamel.yaml import YAML

from mnistbench import models, optim
from mnistbench.params import ParamsError, as_dict, load_params
from tests.helpers import ROOT


def repo_params_text() -> str:
    return (ROOT / "params.yaml").read_text()


def with_value(text: str, key: str, value: str) -> str:
    """params.yaml text with `key` (train.lr, or model.mlp.hidden in an entry's section) set to the
    literal YAML `value`."""
    *parents, name = key.split(".")
    pattern = "(?m)^(" + "".join(
        rf"{'  ' * depth}{part}:[^\n]*\n(?:{'  ' * (depth + 1)}.*\n|\s*#.*\n)*?" for depth, part in enumerate(parents)
    )
    pattern += rf"{'  ' * len(parents)}{name}:) [^#\n]*"
    new, count = re.subn(pattern, rf"\g<1> {value} ", text)
    assert count == 1, key
    return new


def load_text(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_repo_params_load_with_expected_types():
    p = load_params(ROOT / "params.yaml")
    assert models.model_keys(p.model) == {"hidden": (128, 64), "activation": "relu", "dropout": 0.0}
    assert isinstance(p.train.lr, float) and p.train.lr == 0.001
    assert p.train.batch_size == 64 and p.train.device in ("auto", "cpu", "cuda")
    assert optim.optimizer_keys(p.train) == {"weight_decay": 0.0} and optim.schedule_keys(p.train) == {}
    assert as_dict(p.model) == YAML(typ="safe", pure=True).load(repo_params_text())["model"]


def test_every_key_agrees_with_dvc_reading(tmp_path):
    # DVC reads params.yaml with ruamel; so must we, value for value.
    dvc_view = YAML(typ="safe", pure=True).load(repo_params_text())
    p = load_params(ROOT / "params.yaml")
    for section, values in dvc_view.items():
        assert as_dict(getattr(p, section)) == values


@pytest.mark.parametrize("literal", ["1e-3", "1.0e-3", "0.001", ".001"])
def test_scientific_notation_is_a_float_as_for_dvc(tmp_path, literal):
    assert load_text(tmp_path, with_value(repo_params_text(), "train.lr", literal)).train.lr == 0.001


def test_integer_accepted_where_a_float_is_expected(tmp_path):
    p = load_text(tmp_path, with_value(repo_params_text(), "train.lr", "1"))
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)


@pytest.mark.parametrize(
    "key, literal, message",
    [
        ("train.epochs", '"five"', r"train\.epochs = 'five': must be an integer"),
        ("train.epochs", "2.5", r"train\.epochs = 2\.5: must be an integer"),
        ("train.epochs", "true", r"train\.epochs = True: must be an integer"),
        ("train.lr", "fast", r"train\.lr = 'fast': must be a number"),
        ("train.lr", "true", r"train\.lr = True: must be a number"),
        ("train.lr", ".nan", r"train\.lr = nan: must be a finite number"),
        ("train.lr", "-1", r"train\.lr = -1\.0: must be > 0"),
        ("train.lr", "0", r"train\.lr = 0\.0: must be > 0"),
        ("train.epochs", "0", r"train\.epochs = 0: must be >= 1"),
        ("train.batch_size", "0", r"train\.batch_size = 0: must be >= 1"),
        ("train.normalize_std", "0", r"train\.normalize_std = 0\.0: must be > 0"),
        ("train.device", "gpu", r"train\.device = 'gpu': must be one of auto, cpu, cuda"),
        ("train.threads", "0", r"train\.threads = 0: must be >= 1"),
        ("prepare.val_size", "-5", r"prepare\.val_size = -5: must be >= 1"),
        ("prepare.dataset", "cifar10", r"prepare\.dataset = 'cifar10': must be one of mnist, fashion-mnist, kmnist"),
        ("train.augment_shift", "-1", r"train\.augment_shift = -1\.0: must be >= 0"),
        ("train.augment_rotate", "90", r"train\.augment_rotate = 90\.0: must be <= 45"),
        ("replicates.n", "0", r"replicates\.n = 0: must be >= 2"),
        ("replicates.n", "-3", r"replicates\.n = -3: must be >= 2"),
        ("replicates.n", "1", r"replicates\.n = 1: must be >= 2"),  # no spread from one seed
        ("replicates.n", "2.5", r"replicates\.n = 2\.5: must be an integer"),
        ("replicates.n", "ten", r"replicates\.n = 'ten': must be an integer"),
        ("replicates.jobs", "0", r"replicates\.jobs = 0: must be >= 1"),
        ("train.seed", "9223372036854775808", r"train\.seed = 9223372036854775808: must be <= 9223372036854775807"),
        (
            "train.seed",
            "9223372036854775800",
            r"train\.seed = 9223372036854775800 with replicates\.n = 10 needs seeds up to 9223372036854775809, "
            r"past the largest seed 9223372036854775807; lower train\.seed",
        ),
        ("gate.significance", "0", r"gate\.significance = 0\.0: must be > 0"),
        ("gate.significance", "0.9", r"gate\.significance = 0\.9: must be <= 0\.5"),
        ("gate.min_drop", "-0.001", r"gate\.min_drop = -0\.001: must be >= 0"),
        # past torch's integers: each crashed its stage, after DVC had deleted the stage's outputs
        (
            "prepare.split_seed",
            "18446744073709551616",
            r"prepare\.split_seed = 18446744073709551616: must be <= 9223372036854775807 \(a 64-bit integer\)",
        ),
        ("train.threads", "1000000000000", r"train\.threads = 1000000000000: must be <= 1024"),
    ],
)
def test_bad_value_names_key_value_and_rule(tmp_path, key, literal, message):
    with pytest.raises(ParamsError, match=message) as err:
        load_text(tmp_path, with_value(repo_params_text(), key, literal))
    assert "\n" not in str(err.value)


def registries_check(params) -> None:
    """What validate runs where the sections changed: every model, optimizer and schedule section."""
    models.MODELS.check_all(params.model.arch, params.model.sections, others="arch")
    optim.check(params.train)


@pytest.mark.parametrize(
    "key, literal, message",
    [
        ("model.mlp.hidden", "[]", r"model\.mlp\.hidden = list: must have at least 1 item"),
        ("model.mlp.hidden", "128", r"model\.mlp\.hidden = 128: must be a list of integers"),
        ("model.mlp.hidden", "[128, 0]", r"model\.mlp\.hidden\[1\] = 0: must be >= 1"),
        ("model.mlp.hidden", "[128, 6.5]", r"model\.mlp\.hidden\[1\] = 6\.5: must be an integer"),
        (
            "model.mlp.hidden",
            "[128, 100000000000000000000]",
            r"model\.mlp\.hidden\[1\] = 100000000000000000000: must be <= 9223372036854775807 \(a 64-bit integer\)",
        ),
        ("model.mlp.dropout", "1.5", r"model\.mlp\.dropout = 1\.5: must be <= 0\.9"),
        ("model.mlp.activation", "swish", r"model\.mlp\.activation = 'swish': must be one of relu, gelu, tanh"),
        ("model.cnn.channels", "[8, 8, 8, 8]", r"model\.cnn\.channels = list: must have at most 3 items"),
        ("train.sgd.momentum", "1.0", r"train\.sgd\.momentum = 1\.0: must be < 1\.0"),
        ("train.adam.weight_decay", "-0.1", r"train\.adam\.weight_decay = -0\.1: must be >= 0"),
        ("train.adadelta.rho", "1e-3x", r"train\.adadelta\.rho = '1e-3x': must be a number"),
        ("train.steplr.gamma", "0", r"train\.steplr\.gamma = 0\.0: must be > 0"),
        ("train.steplr.step_size", "1.5", r"train\.steplr\.step_size = 1\.5: must be an integer"),
    ],
)
def test_a_bad_value_of_a_registered_entrys_key_names_key_value_and_rule(tmp_path, key, literal, message):
    """Checked by the entry's own declaration (mnistbench/registry.py), in every section present, the
    chosen one or not: a typo in cnn's section is caught before a grid switches to it."""
    params = load_text(tmp_path, with_value(repo_params_text(), key, literal))  # params.py keeps sections as read
    with pytest.raises(ParamsError, match=message) as err:
        registries_check(params)
    assert "\n" not in str(err.value)


def test_a_key_of_another_entry_is_refused_naming_the_one_that_reads_it(tmp_path):
    text = repo_params_text().replace(
        "    activation: relu    # relu", "    channels: [8]\n    activation: relu    # relu"
    )
    with pytest.raises(
        ParamsError, match=r"model\.mlp\.channels: mlp reads no key channels; cnn reads it \(its keys: "
    ):
        registries_check(load_text(tmp_path, text))
    text = repo_params_text().replace("    rho: 0.9", "    rho: 0.9\n    momentum: 0.9")
    with pytest.raises(ParamsError, match=r"train\.adadelta\.momentum: adadelta reads no key momentum; sgd reads it"):
        registries_check(load_text(tmp_path, text))


def test_a_key_in_the_flat_layout_of_old_says_where_it_goes_now(tmp_path):
    text = repo_params_text().replace("model:\n  arch: mlp", "model:\n  arch: mlp\n  hidden: [64]")
    with pytest.raises(ParamsError, match=r"unknown key model\.hidden; allowed in model: arch, and a section per"):
        load_text(tmp_path, text)  # a value, not a mapping: params.py refuses it, torch-free
    text = repo_params_text().replace("model:\n  arch: mlp", "model:\n  arch: mlp\n  dropout: {p: 0.1}")
    readers = ", ".join(models.MODELS.readers("dropout"))  # mlp, cnn, ...: whichever are registered
    with pytest.raises(ParamsError, match=rf"model\.dropout: a key of {readers}; it goes in the section of the "):
        registries_check(load_text(tmp_path, text))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.arch", "resnet", "model.arch = 'resnet': must be one of {models} (the architectures registered in"),
        ("train.optimizer", "lion", "train.optimizer = 'lion': must be one of {optimizers} (the optimizers registered"),
        ("train.schedule", "onecycle", "train.schedule = 'onecycle': must be one of {schedules} (the schedules"),
    ],
)
def test_an_unregistered_entry_lists_the_registered_ones(tmp_path, key, value, message):
    names = dict(models=models.MODELS.names(), optimizers=optim.OPTIMIZERS.names(), schedules=optim.SCHEDULES.names())
    with pytest.raises(ParamsError, match=re.escape(message.format(**names))):
        registries_check(load_text(tmp_path, with_value(repo_params_text(), key, value)))


def test_a_section_of_an_unregistered_entry_is_named(tmp_path):
    text = repo_params_text().replace("model:\n  arch: mlp", "model:\n  arch: mlp\n  resnet: {depth: 50}")
    with pytest.raises(ParamsError, match=r"unknown key model\.resnet; allowed in model: arch, and a section per"):
        registries_check(load_text(tmp_path, text))


def test_unknown_key_is_named_with_the_allowed_ones(tmp_path):
    text = repo_params_text().replace("  lr: 0.001", "  learning_rate: 0.001")
    with pytest.raises(ParamsError, match=r"unknown key train\.learning_rate; allowed in train: seed, epochs.*lr"):
        load_text(tmp_path, text)


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown key optimizer"):
        load_text(tmp_path, repo_params_text() + "optimizer:\n  name: sgd\n")


def test_missing_key_is_named(tmp_path):
    text = re.sub(r"(?m)^  threads:.*\n", "", repo_params_text())
    with pytest.raises(ParamsError, match=r"missing key train\.threads"):
        load_text(tmp_path, text)


def test_malformed_yaml_gives_the_line(tmp_path):
    with pytest.raises(ParamsError, match=r"not valid YAML at line \d+"):
        load_text(tmp_path, repo_params_text().replace("  epochs:", "  epochs: [1,\n  oops:"))


def test_duplicate_key_is_refused(tmp_path):
    with pytest.raises(ParamsError, match=r"not valid YAML"):
        load_text(tmp_path, repo_params_text().replace("  lr: 0.001", "  lr: 0.001\n  lr: 0.1"))


def test_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ParamsError, match=r"train must be a mapping"):
        load_text(tmp_path, re.sub(r"(?m)^train:\n(  .*\n)*", "train: 3\n", repo_params_text()))


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match=r"cannot read it"):
        load_params(tmp_path / "nope.yaml")


def test_stage_reports_bad_params_in_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "train.epochs", "five"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--data",
            "data",
            "--model",
            "m.pt",
            "--metrics",
            "t.json",
            "--live",
            "live",
            "--run-info",
            "r.json",
            "--time",
            "s.json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "train: error: params.yaml: train.epochs = 'five': must be an integer"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_validation_set_as_large_as_the_training_set_stops_prepare_before_any_download(tmp_path):
    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "prepare.val_size", "60000"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), DATA_MIRROR=str(tmp_path / "no-mirror-here"))
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--out", "data"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "prepare: error: prepare.val_size = 60000: must be between 1 and 59999 (the training set has 60000 images)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def run_validate(cwd, **env) -> subprocess.CompletedProcess:
    """The validate stage as DVC runs it, in `cwd`, with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "stages.validate", "--out", "data/params.ok"],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        capture_output=True,
        text=True,
    )


def lock_of(text: str, **code_md5) -> str:
    """A dvc.lock recording the train stage as DVC does after running it with params.yaml `text`:
    its model and train sections, and the md5 of its model and optimizer code (or `code_md5`'s)."""
    tree = YAML(typ="safe", pure=True).load(text)
    deps = [
        {
            "path": f"mnistbench/{name}.py",
            "md5": code_md5.get(name) or hashlib.md5((ROOT / "mnistbench" / f"{name}.py").read_bytes()).hexdigest(),
        }
        for name in ("models", "optim", "registry", "estimators")
    ]
    lock = {
        "schema": "2.0",
        "stages": {
            "train": {"deps": deps, "params": {"params.yaml": {"model": tree["model"], "train": tree["train"]}}}
        },
    }
    out = io.StringIO()
    YAML().dump(lock, out)
    return out.getvalue()


def imports_torch(stderr: str) -> bool:
    return bool(re.search(r"\|\s+torch$", stderr, re.MULTILINE))  # -X importtime lists every import


def test_validate_stage_writes_the_same_bytes_for_any_valid_params_and_loads_no_torch(tmp_path):
    """Where the model section, train.optimizer and their code are what dvc.lock recorded, validate
    needs no torch: a change of train.lr (or any other key) costs a tenth of a second."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-X", "importtime", "-m", "stages.validate", "--out", "data/params.ok"]
    (tmp_path / "dvc.lock").write_text(lock_of(repo_params_text()))
    written = []
    for lr in ("0.001", "0.01"):
        (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "train.lr", lr))
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert not imports_torch(result.stderr)
        written.append((tmp_path / "data/params.ok").read_bytes())
    assert written[0] == written[1]  # so a change of params never reruns a stage through this file

    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "train.epochs", "0"))
    result = subprocess.run(command[:1] + command[3:], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["validate: error: params.yaml: train.epochs = 0: must be >= 1"]
    assert (tmp_path / "data/params.ok").read_bytes() == written[0]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["params.ok"]  # no temp file left


UNKNOWN_ARCH = (
    f"validate: error: params.yaml: model.arch = 'resnet': must be one of {models.MODELS.names()} "
    "(the architectures registered in mnistbench/models.py)"
)
UNKNOWN_OPTIMIZER = (
    f"validate: error: params.yaml: train.optimizer = 'lion': must be one of {optim.OPTIMIZERS.names()} "
    "(the optimizers registered in mnistbench/optim.py)"
)
MLP_READS_NO_CHANNELS = (
    "validate: error: params.yaml: model.mlp.channels: mlp reads no key channels; cnn reads it "
    "(its keys: hidden, activation, dropout)"
)


@pytest.mark.parametrize(
    "key, value, lock, message",
    [
        ("model.arch", "resnet", "recorded", UNKNOWN_ARCH),  # the model section differs from dvc.lock's
        ("model.arch", "resnet", None, UNKNOWN_ARCH),  # no dvc.lock: train will run
        ("train.optimizer", "lion", "recorded", UNKNOWN_OPTIMIZER),
        ("train.optimizer", "lion", None, UNKNOWN_OPTIMIZER),
        ("model.mlp.hidden", "[64]", "recorded", None),  # checked (torch imported), and valid
        ("model.cnn.dropout", "0.5", "recorded", None),  # another arch's section: checked too
        (
            "model.mlp.dropout",
            "{p: 1}",
            "recorded",
            "validate: error: params.yaml: model.mlp.dropout = dict: must be a number, e.g. 0.001 or 1e-3",
        ),
        ("train.optimizer", "sgd", "recorded", None),
        (
            "train.steplr.gamma",
            "2",
            "recorded",
            "validate: error: params.yaml: train.steplr.gamma = 2.0: must be <= 1.0",
        ),
    ],
)
def test_validate_checks_the_registries_where_the_train_stage_will_meet_a_new_value(
    tmp_path, key, value, lock, message
):
    if lock:
        (tmp_path / "dvc.lock").write_text(lock_of(repo_params_text()))
    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), key, value))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stages.validate", "--out", "data/params.ok"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    assert imports_torch(result.stderr)
    if message:
        assert result.returncode == 1 and [line for line in result.stderr.splitlines() if "|" not in line] == [message]
        assert not (tmp_path / "data").exists()
    else:
        assert result.returncode == 0, result.stderr


def test_validate_checks_the_model_again_when_its_code_changed(tmp_path):
    """The same params as dvc.lock's, but mnistbench/models.py is not the code the train stage ran:
    an architecture may have been renamed or removed, so validate builds it again (and imports torch)."""
    (tmp_path / "dvc.lock").write_text(lock_of(repo_params_text(), models="0" * 32))
    (tmp_path / "params.yaml").write_text(repo_params_text())
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stages.validate", "--out", "data/params.ok"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and imports_torch(result.stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: train.device cuda is valid here")
def test_validate_stage_refuses_cuda_on_a_machine_without_a_gpu(tmp_path):
    """Caught by validate, not by train: under `dvc repro`, DVC would have deleted the model first."""
    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "train.device", "cuda"))
    result = run_validate(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "validate: error: params.yaml: train.device = 'cuda' but torch sees no CUDA device; use auto or cpu"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


LOCKED_PREPARE = (
    "stages:\n  prepare:\n    params:\n      params.yaml:\n        prepare.dataset: {}\n"
    "        prepare.split_seed: 0\n        prepare.val_size: 5000\n"
)
KMNIST_ABSENT = (
    "validate: error: params.yaml: prepare.dataset = 'kmnist' but no folder in DATA_MIRROR={} holds "
    "kmnist/train-images-idx3-ubyte.gz, which prepare needs; add one that does, or unset DATA_MIRROR to download"
)


@pytest.mark.parametrize(
    "locked, mirror, refused",
    [
        (None, "folders", True),  # no dvc.lock: prepare will run
        ("mnist", "folders", True),  # dvc.lock prepared mnist: prepare reruns for kmnist
        ("kmnist", "folders", False),  # prepare's params as locked: its outputs stay, the mirror is not needed
        (None, "with-a-url", False),  # a URL root may hold the files: prepare finds out
        (None, "unset", False),  # torchvision's mirrors may: prepare finds out
    ],
)
def test_validate_refuses_a_dataset_no_mirror_folder_holds_when_prepare_would_rerun(tmp_path, locked, mirror, refused):
    """Found by trying it: `dvc exp run -S prepare.dataset=kmnist` with DATA_MIRROR=../shared/datasets
    (MNIST only) passed validate; DVC then deleted data/prepared and prepare failed."""
    holds_mnist, empty = tmp_path / "m1", tmp_path / "m2"
    (holds_mnist / "mnist").mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (holds_mnist / "mnist" / name).write_bytes(b"")
    empty.mkdir()
    folders = f"{holds_mnist}:{empty}"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        DATA_MIRROR={"folders": folders, "with-a-url": f"{folders}:https://example.invalid/d"}.get(mirror, ""),
    )
    if mirror == "unset":
        del env["DATA_MIRROR"]
    work = tmp_path / "repo"
    work.mkdir()
    (work / "params.yaml").write_text(with_value(repo_params_text(), "prepare.dataset", "kmnist"))
    if locked:
        (work / "dvc.lock").write_text(LOCKED_PREPARE.format(locked))
    command = [sys.executable, "-m", "stages.validate", "--out", "data/params.ok"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if refused:
        assert result.returncode == 1
        assert result.stderr.splitlines() == [KMNIST_ABSENT.format(folders)]
        assert not (work / "data").exists()
    else:
        assert result.returncode == 0, result.stderr
        assert (work / "data/params.ok").is_file()

    (work / "params.yaml").write_text(repo_params_text())  # mnist, which the first folder holds
    env["DATA_MIRROR"] = folders
    assert subprocess.run(command, cwd=work, env=env, capture_output=True, text=True).returncode == 0


def test_validate_says_where_a_relative_mirror_root_was_read_from(tmp_path):
    """A queued or --temp experiment runs in a copy under .dvc/tmp/exps, where ../shared/datasets names
    another folder: the line says which."""
    (tmp_path / "params.yaml").write_text(repo_params_text())
    result = run_validate(tmp_path, DATA_MIRROR="../nowhere")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"validate: error: params.yaml: prepare.dataset = 'mnist' but no folder in DATA_MIRROR=../nowhere holds "
        f"mnist/train-images-idx3-ubyte.gz, which prepare needs (relative roots are read from {tmp_path}: a queued or "
        f"--temp experiment runs in a copy there); add one that does, or unset DATA_MIRROR to download"
    ]


def test_validate_refuses_a_model_too_large_for_this_machines_memory(tmp_path):
    """Under `dvc exp run -S model.hidden=[100000000000]`, DVC deleted the model, then train ran out of memory."""
    (tmp_path / "params.yaml").write_text(with_value(repo_params_text(), "model.mlp.hidden", "[100000000000, 64]"))
    result = run_validate(tmp_path)
    assert result.returncode == 1
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert result.stderr.splitlines() == [
        f"validate: error: params.yaml: model.mlp.hidden = [100000000000, 64]: 84,900,000,000,714 parameters need "
        f"1,358,400 GB to train (float32 weights, gradients, Adam's moments), more than this machine's "
        f"{total / 1e9:,.0f} GB; use smaller widths"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
