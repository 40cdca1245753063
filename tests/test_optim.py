"""mnistbench.optim against torch.optim: the same kernels and schedule, so the same bits; the
registry's choices; torch.optim's interface (param_groups, state_dict) on the fused path."""

import pytest
import torch
import torch.nn.functional as F

from mnistbench import optim
from mnistbench.data import normalize
from mnistbench.models import build_model
from mnistbench.optim import CosineDecay, FusedAdam, StepDecay, build_optimizer, build_schedule
from mnistbench.params import ParamsError
from mnistbench.registry import key
from tests.helpers import model_params, synthetic_digits, train_params

torch.set_num_threads(1)


def train(arch: str, make_optimizer, make_schedule, steps: int = 25):
    torch.manual_seed(0)
    model = build_model(model_params(arch, hidden=(32, 16), **({"channels": (4, 8)} if arch == "cnn" else {})))
    images, labels = synthetic_digits(16 * steps, seed=3)
    x = normalize(images, 0.1307, 0.3081)
    optimizer = make_optimizer(model.parameters())
    schedule = make_schedule(optimizer)
    lrs = []
    for i in range(steps):
        loss = F.cross_entropy(model(x[16 * i : 16 * (i + 1)]), labels[16 * i : 16 * (i + 1)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return [p.detach().clone() for p in model.parameters()], lrs, optimizer


OURS_AND_TORCHS = {  # train.optimizer, and its weight decay: what torch.optim builds for the same values
    ("adam", 0.0): lambda p: torch.optim.Adam(p, lr=0.003, fused=True),
    ("adam", 0.01): lambda p: torch.optim.Adam(p, lr=0.003, weight_decay=0.01, fused=True),
    ("adamw", 0.01): lambda p: torch.optim.AdamW(p, lr=0.003, weight_decay=0.01, fused=True),
    ("sgd", 0.01): lambda p: torch.optim.SGD(p, lr=0.003, momentum=0.9, weight_decay=0.01),
    ("adadelta", 0.01): lambda p: torch.optim.Adadelta(p, lr=0.003, rho=0.8, weight_decay=0.01),
}
OWN_KEYS = {"sgd": {"sgd__momentum": 0.9}, "adadelta": {"adadelta__rho": 0.8}}  # besides weight_decay


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("name, decay", list(OURS_AND_TORCHS))
def test_weights_and_learning_rates_are_bit_identical_to_torch_optim(arch, cosine, name, decay):
    params = train_params(optimizer=name, lr=0.003, **{f"{name}__weight_decay": decay}, **OWN_KEYS.get(name, {}))
    ours = train(
        arch, lambda p: build_optimizer(params, p), lambda o: CosineDecay(o, total_steps=25) if cosine else None
    )
    theirs = train(
        arch,
        OURS_AND_TORCHS[name, decay],
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=25) if cosine else None,
    )
    assert ours[1] == theirs[1]  # every learning rate, as floats
    assert all(torch.equal(a, b) for a, b in zip(ours[0], theirs[0]))
    still = train(arch, lambda p: build_optimizer(train_params(optimizer=name, lr=1e-30), p), lambda o: None)[0]
    assert not torch.equal(ours[0][0], still[0])  # it did train


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_the_fused_path_has_torch_optims_state_dict_and_torch_optim_loads_it(name):
    params = train_params(optimizer=name, lr=0.003, **{f"{name}__weight_decay": 0.01})
    torch_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    _, _, ours = train("mlp", lambda p: build_optimizer(params, p), lambda o: None)
    _, _, theirs = train("mlp", lambda p: torch_class(p, lr=0.003, weight_decay=0.01, fused=True), lambda o: None)
    assert isinstance(ours, FusedAdam)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    assert mine["state"].keys() == torchs["state"].keys()
    for i, state in torchs["state"].items():
        assert state.keys() == mine["state"][i].keys()
        assert all(
            torch.equal(state[k], mine["state"][i][k]) and state[k].dtype == mine["state"][i][k].dtype for k in state
        )
    again = torch_class(build_model(model_params(hidden=(32, 16))).parameters(), lr=0.1, fused=True)
    again.load_state_dict(mine)
    assert again.param_groups[0]["lr"] == 0.003 and again.param_groups[0]["weight_decay"] == 0.01


def test_another_optimizers_section_changes_no_bit():
    """Each optimizer reads its own section: sgd's momentum is nothing to an Adam run."""
    runs = [
        train(
            "mlp", lambda p, m=m: build_optimizer(train_params(optimizer="adam", sgd__momentum=m), p), lambda o: None
        )[0]
        for m in (0.0, 0.9)
    ]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_steplr_gives_torchs_learning_rates_stepped_once_an_epoch():
    """pytorch/examples' mnist/main.py steps StepLR after each epoch; ours steps after each optimizer
    step and decays at an epoch's end: the same floats, epoch for epoch."""
    per_epoch, epochs = 3, 7
    params = train_params(schedule="steplr", epochs=epochs, lr=1.0, steplr__step_size=2, steplr__gamma=0.7)
    ours = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=1.0)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=1.0)
    stepper = build_schedule(params, ours, steps_per_epoch=per_epoch)
    reference = torch.optim.lr_scheduler.StepLR(theirs, step_size=2, gamma=0.7)
    assert isinstance(stepper, StepDecay)
    for _ in range(epochs):
        for _ in range(per_epoch):
            assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
            stepper.step()
        theirs.step()  # no gradients: changes nothing, but StepLR expects an optimizer step first
        reference.step()
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"] == 1.0 * 0.7 * 0.7 * 0.7


def test_an_unknown_optimizer_lists_the_registered_ones():
    with pytest.raises(
        ParamsError,
        match=rf"^params\.yaml: train\.optimizer = 'lion': must be one of {optim.OPTIMIZERS.names()} "
        r"\(the optimizers registered in mnistbench/optim\.py\)$",
    ):
        build_optimizer(train_params(optimizer="lion"), [torch.nn.Parameter(torch.ones(2))])


def test_a_registered_optimizer_with_a_key_of_its_own_is_used_with_no_edit_elsewhere(monkeypatch):
    monkeypatch.setattr(optim.OPTIMIZERS, "entries", dict(optim.OPTIMIZERS.entries))  # undone after

    @optim.register("rmsprop", alpha=key(float, "smoothing constant", min=0.0, max=1.0))
    def rmsprop(parameters, lr: float, alpha: float):
        return torch.optim.RMSprop(parameters, lr=lr, alpha=alpha)

    params = train_params(optimizer="rmsprop", rmsprop__alpha=0.95, schedule="cosine", epochs=1)
    optimizer = build_optimizer(params, [torch.nn.Parameter(torch.ones(2))])
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.param_groups[0]["alpha"] == 0.95
    schedule = build_schedule(params, optimizer, steps_per_epoch=4)
    for _ in range(4):
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ParamsError, match=r"train\.rmsprop\.alpha = 2\.0: must be <= 1\.0"):
        build_optimizer(train_params(optimizer="rmsprop", rmsprop__alpha=2.0), [torch.nn.Parameter(torch.ones(2))])


def test_a_parameter_without_a_gradient_is_left_alone():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optimizer = FusedAdam([a, b], lr=0.1)
    (a * 2).sum().backward()
    optimizer.step()
    assert not torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.ones(2))
    assert optimizer.state[a]["step"].item() == 1 and b not in optimizer.state
