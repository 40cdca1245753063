"""mnistbench.optim against torch.optim: the same kernels and schedule, so the same bits; the
registry's choices; torch.optim's interface (param_groups, state_dict) on the fused path."""

import pytest
import torch
import torch.nn.functional as F

from mnistbench import optim
from mnistbench.data import normalize
from mnistbench.models import build_model
from mnistbench.optim import CosineDecay, FusedAdam, build_optimizer, build_schedule
from mnistbench.params import ParamsError
from tests.helpers import model_params, synthetic_digits, train_params

torch.set_num_threads(1)


def train(arch: str, make_optimizer, make_schedule, steps: int = 25):
    torch.manual_seed(0)
    model = build_model(model_params(arch=arch, hidden=(32, 16), channels=(4, 8)))
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
}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("name, decay", list(OURS_AND_TORCHS))
def test_weights_and_learning_rates_are_bit_identical_to_torch_optim(arch, cosine, name, decay):
    params = train_params(optimizer=name, lr=0.003, weight_decay=decay, momentum=0.9)
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
    params = train_params(optimizer=name, lr=0.003, weight_decay=0.01)
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


def test_momentum_changes_no_bit_of_adam():
    """Documented in params.yaml: a key that does not apply to the chosen optimizer is ignored."""
    runs = [
        train("mlp", lambda p, m=m: build_optimizer(train_params(optimizer="adam", momentum=m), p), lambda o: None)[0]
        for m in (0.0, 0.9)
    ]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_an_unknown_optimizer_lists_the_registered_ones():
    with pytest.raises(
        ParamsError,
        match=r"^params\.yaml: train\.optimizer = 'lion': must be one of adam, adamw, "
        r"sgd \(the optimizers registered in mnistbench/optim\.py\)$",
    ):
        build_optimizer(train_params(optimizer="lion"), [torch.nn.Parameter(torch.ones(2))])


def test_a_registered_optimizer_is_used_with_no_edit_elsewhere(monkeypatch):
    monkeypatch.setitem(
        optim.OPTIMIZERS, "rmsprop", lambda params, parameters: torch.optim.RMSprop(parameters, lr=params.lr)
    )
    optimizer = build_optimizer(train_params(optimizer="rmsprop"), [torch.nn.Parameter(torch.ones(2))])
    assert isinstance(optimizer, torch.optim.RMSprop)
    schedule = build_schedule(train_params(schedule="cosine"), optimizer, total_steps=4)
    for _ in range(4):
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_a_parameter_without_a_gradient_is_left_alone():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optimizer = FusedAdam([a, b], lr=0.1)
    (a * 2).sum().backward()
    optimizer.step()
    assert not torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.ones(2))
    assert optimizer.state[a]["step"].item() == 1 and b not in optimizer.state
