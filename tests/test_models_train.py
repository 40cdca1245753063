import os

import pytest
import torch
from torch import nn

from mnistbench import models
from mnistbench.data import normalize
from mnistbench.files import FileFormatError
from mnistbench.models import build_model, load_checkpoint, parameter_count, save_checkpoint
from mnistbench.params import ParamsError
from mnistbench.portable import PortableLinear
from mnistbench.registry import key
from mnistbench.train import fit, loss_and_accuracy, setup, train_epoch
from tests.helpers import model_params, synthetic_digits
from tests.helpers import train_params as repo_train_params

torch.set_num_threads(1)


def train_params(**overrides):
    return repo_train_params(**{"epochs": 2, "batch_size": 16, "lr": 0.003, **overrides})


def mlp(hidden: tuple[int, ...]) -> nn.Module:
    return build_model(model_params(hidden=hidden))


def tiny_xy(n: int, seed: int):
    images, labels = synthetic_digits(n, seed)
    return normalize(images, 0.1307, 0.3081), labels


def test_mlp_shapes_match_the_seed():
    model = build_model(model_params())
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(128, 784), (128,), (64, 128), (64,), (10, 64), (10,)]
    assert sum(p.numel() for p in model.parameters()) == 109_386
    assert model(torch.zeros(5, 784)).shape == (5, 10)


def test_linear_and_cnn_shapes():
    linear = build_model(model_params(arch="linear"))
    assert sum(p.numel() for p in linear.parameters()) == 784 * 10 + 10
    cnn = build_model(model_params(arch="cnn"))
    # conv 1->32 (3x3), conv 32->64 (3x3), 64*7*7 -> 128 -> 64 -> 10
    expected = (9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 7 * 7 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10)
    assert sum(p.numel() for p in cnn.parameters()) == expected == 429_258
    assert cnn(torch.zeros(5, 784)).shape == (5, 10) and linear(torch.zeros(5, 784)).shape == (5, 10)
    one_block = build_model(model_params(arch="cnn", channels=(4,), hidden=(16,)))
    assert one_block(torch.zeros(2, 784)).shape == (2, 10)  # 28 -> 14


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"arch": "linear"},
        {"arch": "cnn"},
        {"hidden": (300, 7, 5), "dropout": 0.5},
        {"arch": "cnn", "channels": (4,), "hidden": (16,)},
        {"arch": "cnn", "channels": (3, 5, 6), "hidden": (9, 2), "activation": "gelu"},
    ],
)
def test_parameter_count_on_the_meta_device_is_build_models(changes):
    """validate refuses a model too large for memory from this count (models.check_memory)."""
    model = model_params(**changes)
    assert parameter_count(model) == sum(p.numel() for p in build_model(model).parameters())


def test_dropout_modules_only_when_asked_and_the_seeds_layer_names_kept():
    assert [k for k in build_model(model_params()).state_dict()] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
        "layers.4.weight",
        "layers.4.bias",
    ]
    with_dropout = build_model(model_params(dropout=0.5, activation="gelu"))
    kinds = [type(m).__name__ for m in with_dropout.layers]
    assert kinds == ["PortableLinear", "GELU", "Dropout", "PortableLinear", "GELU", "Dropout", "PortableLinear"]


def test_build_model_puts_every_plain_linear_layer_on_the_portable_kernels_and_keeps_its_weights():
    """The architectures are written with nn.Linear; build_model converts them (portable.convert)
    without drawing a weight again: the same parameters as the unconverted model from the same seed."""
    torch.manual_seed(3)
    plain = models.MLP(**models.model_keys(model_params()))
    after_plain = torch.rand(1)
    torch.manual_seed(3)
    built = build_model(model_params())
    after_built = torch.rand(1)
    assert all(type(m) is PortableLinear for m in built.modules() if isinstance(m, nn.Linear))
    assert not any(type(m) is PortableLinear for m in plain.modules())
    assert list(plain.state_dict()) == list(built.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), built.state_dict().values()))
    assert torch.equal(after_plain, after_built)  # the conversion drew no random number


def test_an_unknown_architecture_lists_the_registered_ones():
    with pytest.raises(
        ParamsError, match=rf"^params\.yaml: model\.arch = 'resnet': must be one of {models.MODELS.names()} \("
    ):
        build_model(model_params(arch="resnet"))


@pytest.fixture
def registry(monkeypatch):
    """models.MODELS with whatever a test registers undone after it."""
    monkeypatch.setattr(models.MODELS, "entries", dict(models.MODELS.entries))
    return models.MODELS


def test_a_registered_architecture_is_built_counted_and_checkpointed_with_no_edit_elsewhere(tmp_path, registry):
    @models.register("tiny", kernel=key(int, "the conv's kernel size", min=1, max=28))
    class Tiny(nn.Module):
        def __init__(self, kernel: int):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, kernel)
            self.head = nn.Linear(2 * (29 - kernel) ** 2, 10)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x.view(-1, 1, 28, 28))).flatten(1))

    params = model_params(arch="tiny", kernel=5)
    torch.manual_seed(0)
    model = build_model(params)
    assert type(model.head) is PortableLinear and parameter_count(params) == 2 * 25 + 2 + 1152 * 10 + 10
    save_checkpoint(tmp_path / "tiny.pt", model, params, mean=0.1, std=0.2)
    assert torch.load(tmp_path / "tiny.pt", weights_only=True)["model"] == {"arch": "tiny", "keys": {"kernel": 5}}
    loaded, _ = load_checkpoint(tmp_path / "tiny.pt")
    x = torch.randn(3, 784)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(ParamsError, match=r"model\.tiny\.kernel = 0: must be >= 1"):
        build_model(model_params(arch="tiny", kernel=0))
    with pytest.raises(ParamsError, match=r"missing key model\.tiny\.kernel: the conv's kernel size"):
        build_model(model_params(arch="tiny"))
    del registry.entries["tiny"]
    with pytest.raises(
        FileFormatError,
        match=rf"a checkpoint of model\.arch = 'tiny', which is not registered in "
        rf"mnistbench/models\.py \(registered: {registry.names()}\)",
    ):
        load_checkpoint(tmp_path / "tiny.pt")


def grow(registry, arch: str, **keys) -> None:
    """The schema of `arch` grows by `keys`, its code unchanged otherwise (what a new key does)."""
    entry = registry.entries[arch]
    build = entry.build
    registry.register(arch, **entry.keys, **keys)(lambda **k: build(**{n: k[n] for n in entry.keys}))


def test_a_checkpoint_stays_loadable_when_another_architecture_grows_a_key(tmp_path, registry):
    torch.manual_seed(0)
    model = mlp((16,))
    save_checkpoint(tmp_path / "m.pt", model, model_params(hidden=(16,)), mean=0.1, std=0.2)
    grow(registry, "cnn", norm=key(str, "normalization after each conv", choices=("none", "batch")))
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(3, 784)
    assert torch.equal(loaded(x), model.eval()(x))


def test_a_checkpoint_made_before_its_architecture_read_a_key_is_refused_naming_it_or_loads_with_its_old_value(
    tmp_path, registry, capsys
):
    torch.manual_seed(0)
    model = mlp((16,))
    save_checkpoint(tmp_path / "m.pt", model, model_params(hidden=(16,)), mean=0.1, std=0.2)
    before = registry.entries["mlp"]
    grow(registry, "mlp", norm=key(str, "normalization after each layer", choices=("none", "batch")))
    with pytest.raises(
        FileFormatError,
        match=r"m\.pt: a checkpoint of mlp made before mlp read model\.mlp\.norm \(normalization after each "
        r"layer\); rerun `dvc repro train`, or declare the value that rebuilds such a model as old= of that key",
    ):
        load_checkpoint(tmp_path / "m.pt")
    registry.entries["mlp"] = before
    grow(registry, "mlp", norm=key(str, "normalization after each layer", choices=("none", "batch"), old="none"))
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(3, 784)
    assert torch.equal(loaded(x), model.eval()(x))
    assert "made before mlp read model.mlp.norm; loaded with 'none', what it did then" in capsys.readouterr().err


def test_a_checkpoint_with_a_key_its_architecture_no_longer_reads_is_refused_naming_it(tmp_path):
    save_checkpoint(tmp_path / "m.pt", mlp((8,)), model_params(hidden=(8,)), mean=0.1, std=0.2)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["model"]["keys"]["width"] = 3
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(FileFormatError, match=r"built with model\.mlp\.width = 3, which mlp no longer reads"):
        load_checkpoint(tmp_path / "old.pt")


def test_a_format_2_checkpoint_of_the_flat_section_still_loads(tmp_path):
    """Before each architecture had its own section, a checkpoint recorded the whole flat model
    section (format 2): its arch's keys are in it, the others ignored."""
    torch.manual_seed(0)
    model = mlp((32, 16))
    flat = {"arch": "mlp", "hidden": [32, 16], "activation": "relu", "dropout": 0.0, "channels": [32, 64]}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(
        {"format": 2, "model": flat, "normalize": {"mean": 0.1, "std": 0.2}, "state_dict": state}, tmp_path / "v2.pt"
    )
    loaded, normalize_ = load_checkpoint(tmp_path / "v2.pt")
    x = torch.randn(4, 784)
    assert torch.equal(loaded(x), model.eval()(x)) and normalize_ == {"mean": 0.1, "std": 0.2}


def test_cnn_checkpoint_round_trip(tmp_path):
    params = model_params(arch="cnn", channels=(4, 8), hidden=(16,))
    torch.manual_seed(0)
    model = build_model(params)
    save_checkpoint(tmp_path / "cnn.pt", model, params, mean=0.1, std=0.2)
    loaded, _ = load_checkpoint(tmp_path / "cnn.pt")
    x = torch.randn(3, 784)
    assert torch.equal(loaded(x), model.eval()(x))


def test_cosine_schedule_decays_to_zero_over_the_run_and_constant_has_none():
    x, y = tiny_xy(70, seed=5)
    params = train_params(epochs=2, batch_size=32, schedule="cosine")
    run = setup(model_params(hidden=(8,)), params, torch.device("cpu"), len(y))
    lrs = []
    for _ in range(params.epochs):
        train_epoch(run.model, run.optimizer, x, y, params.batch_size, run.generator, run.scheduler)
        lrs.append(run.optimizer.param_groups[0]["lr"])
    assert 0 < lrs[0] < params.lr and lrs[-1] == pytest.approx(0.0, abs=1e-12)  # 6 steps: 3 per epoch
    assert setup(model_params(hidden=(8,)), train_params(), torch.device("cpu"), len(y)).scheduler is None


def test_a_checkpoint_with_bad_model_metadata_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pt", mlp((8,)), model_params(hidden=(8,)), mean=0.1, std=0.2)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["model"]["keys"]["hidden"] = "wide"
    torch.save(ckpt, tmp_path / "odd.pt")
    with pytest.raises(FileFormatError, match=r"odd\.pt \(checkpoint\): model\.mlp\.hidden = 'wide': must be a list"):
        load_checkpoint(tmp_path / "odd.pt")


def test_normalize_exact_values():
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    images[0, 0, 1] = 255
    x = normalize(images, mean=0.5, std=0.25)
    assert x.shape == (1, 784) and x.dtype == torch.float32
    assert x[0, 0].item() == pytest.approx(-2.0) and x[0, 1].item() == pytest.approx(2.0)


def test_a_few_training_steps_reduce_the_loss():
    x, y = tiny_xy(320, seed=5)
    torch.manual_seed(0)
    model = mlp((32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003, fused=True)
    before, _ = loss_and_accuracy(model, x, y, batch_size=1000)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        train_epoch(model, optimizer, x, y, batch_size=32, generator=generator)
    after, accuracy = loss_and_accuracy(model, x, y, batch_size=1000)
    assert after < before * 0.5
    assert accuracy > 0.9


def test_fit_returns_one_history_row_per_epoch_and_is_repeatable():
    train, val = tiny_xy(200, seed=5), tiny_xy(50, seed=6)
    runs = [
        fit(model_params(hidden=(16,)), train_params(epochs=3), train, val, torch.device("cpu"), log=lambda _: None)
        for _ in range(2)
    ]
    (model_a, history_a, seconds_a), (model_b, history_b, _) = runs
    assert len(seconds_a) == 3 and all(s > 0 for s in seconds_a)
    assert [row["epoch"] for row in history_a] == [1, 2, 3]
    assert set(history_a[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert history_a == history_b
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)


def test_last_partial_batch_is_trained_on():
    # 70 samples at batch 32: 3 steps (32, 32, 6); an off-by-one would drop the last 6.
    x, y = tiny_xy(70, seed=5)
    model = mlp((8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    train_epoch(model, optimizer, x, y, batch_size=32, generator=torch.Generator().manual_seed(0))
    assert len(steps) == 3


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = mlp((32, 16))
    save_checkpoint(tmp_path / "m.pt", model, model_params(hidden=(32, 16)), mean=0.1, std=0.2)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain types only
    assert raw["model"] == {"arch": "mlp", "keys": {"hidden": [32, 16], "activation": "relu", "dropout": 0.0}}
    assert raw["normalize"] == {"mean": 0.1, "std": 0.2}
    loaded, normalize_ = load_checkpoint(tmp_path / "m.pt")
    assert normalize_ == {"mean": 0.1, "std": 0.2} and not loaded.training
    x = torch.randn(4, 784)
    assert torch.equal(loaded(x), model.eval()(x))


def test_checkpoint_bytes_do_not_depend_on_the_file_name(tmp_path):
    torch.manual_seed(0)
    model = mlp((8,))
    for name in ("a.pt", "model.pt"):
        save_checkpoint(tmp_path / name, model, model_params(hidden=(8,)), mean=0.1, std=0.2)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "model.pt").read_bytes()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_carrying_a_pickled_object_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": 1, "payload": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(FileFormatError, match="refused to load checkpoint: it asks to import posix.system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_shape_is_refused_with_the_reason(tmp_path):
    save_checkpoint(tmp_path / "m.pt", mlp((32,)), model_params(hidden=(32,)), mean=0.1, std=0.2)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["model"]["keys"]["hidden"] = [64]
    torch.save(ckpt, tmp_path / "lying.pt")
    with pytest.raises(
        FileFormatError,
        match=r"do not fit the model its metadata describes "
        r"\(mlp hidden=64 activation=relu dropout=0\.0\).*size mismatch",
    ):
        load_checkpoint(tmp_path / "lying.pt")


@pytest.mark.parametrize("content", [b"", b"junk\n", b"\x80\x02}q\x00.", bytes(range(256)) * 40])
def test_any_bytes_give_a_clear_error_not_a_traceback(tmp_path, content):
    (tmp_path / "m.pt").write_bytes(content)
    with pytest.raises(FileFormatError, match=r"m\.pt: checkpoint|m\.pt: not a checkpoint"):
        load_checkpoint(tmp_path / "m.pt")


def test_garbage_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(FileFormatError, match="unreadable or truncated"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileFormatError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_augmentation_is_seeded_moves_digits_and_keeps_the_background():
    from mnistbench.train import Augment

    images, _ = synthetic_digits(8, seed=3)
    images[:, :4, :] = 0  # a black band at the top: the only pixels known to be background
    x = normalize(images, 0.1307, 0.3081)
    background = (0 - 0.1307) / 0.3081

    def moved(seed):
        augment = Augment(shift=2.0, degrees=10.0, background=background, seed=seed)
        return augment(x, augment.draw(len(x), torch.device("cpu")))

    a, b, other = moved(1), moved(1), moved(2)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, other)
    assert not torch.allclose(a, x)
    # shifted by at most 2 px and rotated by at most 10 deg, the top row is still background
    assert torch.allclose(a.view(8, 28, 28)[:, 0, :], torch.full((8, 28), background), atol=1e-5)
    identity = Augment(shift=0.0, degrees=0.0, background=background, seed=1)
    assert torch.allclose(identity(x, identity.draw(len(x), torch.device("cpu"))), x, atol=1e-5)


def test_augmentation_leaves_the_shuffle_and_the_default_run_alone():
    x, y = tiny_xy(70, seed=5)
    plain = setup(model_params(hidden=(8,)), train_params(), torch.device("cpu"), len(y))
    augmented = setup(model_params(hidden=(8,)), train_params(augment_shift=1.0), torch.device("cpu"), len(y))
    assert plain.augment is None and augmented.augment is not None
    assert torch.equal(torch.randperm(70, generator=plain.generator), torch.randperm(70, generator=augmented.generator))


def test_training_with_augmentation_is_repeatable_and_still_learns():
    train, val = tiny_xy(300, seed=5), tiny_xy(100, seed=6)
    params = train_params(epochs=4, batch_size=32, augment_shift=1.0, augment_rotate=8.0)
    runs = [
        fit(model_params(hidden=(32,)), params, train, val, torch.device("cpu"), log=lambda _: None) for _ in range(2)
    ]
    assert runs[0][1] == runs[1][1]
    assert runs[0][1][-1]["val_accuracy"] > 0.9


@pytest.mark.parametrize("gpu", [False, True])
def test_device_auto_is_the_cpu_where_the_committed_results_were_made_and_says_so_on_a_gpu_machine(
    monkeypatch, capsys, gpu
):
    """A GPU user's `make pipeline` must give the committed CPU bytes (a clean tree, README's next
    commands working); one line says how to train on the GPU instead."""
    from mnistbench import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    threads = torch.get_num_threads()
    try:
        assert runtime.configure_torch(1, "auto") == torch.device("cpu")
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert err == (runtime.GPU_NOTE + "\n" if gpu else "")
    assert "-S train.device=cuda" in runtime.GPU_NOTE and "mnistbench reproduced" in runtime.GPU_NOTE


@pytest.mark.parametrize(
    "arch, keys, parameters",
    [
        (
            "pytorch_example",
            {},
            1_199_882,
        ),  # pytorch/examples mnist/main.py's Net: conv 320 + 18,496, fc 1,179,776 + 1,290
        ("lenet5", {"activation": "tanh", "pool": "avg"}, 61_706),  # C1 156, C3 2,416, C5 48,120, F6 10,164, out 850
    ],
)
def test_the_reference_architectures_have_their_sources_parameter_counts(arch, keys, parameters):
    params = model_params(arch, **keys)
    assert parameter_count(params) == parameters
    model = build_model(params)
    assert model(torch.zeros(2, 784)).shape == (2, 10)
    assert all(type(m) is PortableLinear for m in model.modules() if isinstance(m, nn.Linear))
