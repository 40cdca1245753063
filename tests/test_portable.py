"""PortableLinear against the public nn.Linear: same parameters, same values and gradients to
float rounding; the private oneDNN op it uses for large layers is checked here, so a torch
upgrade that changes or drops it fails these tests rather than training."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistbench import portable
from mnistbench.portable import PortableLinear

torch.set_num_threads(1)


def pair(in_features: int, out_features: int) -> tuple[PortableLinear, nn.Linear]:
    torch.manual_seed(0)
    reference = nn.Linear(in_features, out_features)
    layer = PortableLinear(in_features, out_features)
    layer.load_state_dict(reference.state_dict())
    return layer, reference


@pytest.mark.parametrize("batch", [64, 24, 1])
def test_large_layer_runs_on_onednn_and_matches_nn_linear_with_its_gradients(batch):
    layer, reference = pair(784, 128)
    x = torch.randn(batch, 784, generator=torch.Generator().manual_seed(1), requires_grad=True)
    grad = torch.randn(batch, 128, generator=torch.Generator().manual_seed(2))
    assert portable.uses_onednn(layer, x)
    out, ref = layer(x), reference(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(out, [x, layer.weight, layer.bias], grad)
    want = torch.autograd.grad(ref, [x, reference.weight, reference.bias], grad)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.is_contiguous()
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-4)


def test_training_and_scoring_forwards_give_the_same_bits():
    layer, _ = pair(784, 128)
    x = torch.randn(64, 784, generator=torch.Generator().manual_seed(3))
    trained = layer(x)
    with torch.no_grad():
        scored = layer(x)
    assert trained.requires_grad and torch.equal(trained, scored)


def test_small_layers_and_other_dtypes_stay_on_f_linear_bit_for_bit():
    small, _ = pair(64, 10)
    x = torch.randn(64, 64)
    assert not portable.uses_onednn(small, x)
    assert torch.equal(small(x), F.linear(x, small.weight, small.bias))
    big, _ = pair(784, 128)
    x64 = torch.randn(8, 784, dtype=torch.float64)
    big = big.double()
    assert not portable.uses_onednn(big, x64)
    assert torch.equal(big(x64), F.linear(x64, big.weight, big.bias))


def test_state_dict_is_nn_linear_s():
    layer, reference = pair(784, 128)
    assert isinstance(layer, nn.Linear)
    assert list(layer.state_dict()) == list(reference.state_dict()) == ["weight", "bias"]
