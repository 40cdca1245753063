"""mnistbench.optim against torch.optim: the same kernel and schedule, so the same bits."""

import pytest
import torch
import torch.nn.functional as F

from conftest import model_params, synthetic_digits
from mnistbench.model import build_model
from mnistbench.optim import Adam, CosineDecay
from mnistbench.train import normalize

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
        loss = F.cross_entropy(model(x[16 * i:16 * (i + 1)]), labels[16 * i:16 * (i + 1)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        lrs.append(optimizer.lr if isinstance(optimizer, Adam) else optimizer.param_groups[0]["lr"])
    return [p.detach().clone() for p in model.parameters()], lrs


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("cosine", [False, True])
def test_weights_and_learning_rates_are_bit_identical_to_torch_optim(arch, cosine):
    ours = train(arch, lambda p: Adam(p, lr=0.003),
                 lambda o: CosineDecay(o, total_steps=25) if cosine else None)
    theirs = train(arch, lambda p: torch.optim.Adam(p, lr=0.003, fused=True),
                   lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=25) if cosine else None)
    assert ours[1] == theirs[1]  # every learning rate, as floats
    assert all(torch.equal(a, b) for a, b in zip(ours[0], theirs[0]))
    assert not torch.equal(ours[0][0], train(arch, lambda p: Adam(p, lr=0.0), lambda o: None)[0][0])  # it did train


def test_a_parameter_without_a_gradient_is_left_alone():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optimizer = Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    optimizer.step()
    assert not torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.ones(2))
    assert optimizer.steps[0].item() == 1 and optimizer.steps[1].item() == 0
