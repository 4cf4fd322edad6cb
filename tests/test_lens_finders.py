"""The six challenge architectures: Keras parameter counts and one real training step each."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lensml.models import count_parameters, create_model, get_spec, list_models
from lensml.models.lens_finders import published_order

# LEXACTUM's Keras totals for 101x101x1 input (BatchNorm moving mean and variance included).
KERAS_COUNTS = {
    "cas_swinburne": 4_025_153,
    "lastro_epfl": 5_676_449,
    "cmu_deeplens": 3_526_721,
    "wsi_net": 2_608_385,
    "lens_flow": 98_862,
    "lens_finder": 10_315_777,
}


def test_all_six_are_registered_as_lens_finders():
    assert {spec.name for spec in list_models("lens")} >= set(KERAS_COUNTS)
    for name in KERAS_COUNTS:
        spec = get_spec(name)
        assert spec.inputs == ("bands",) and spec.norm == "zscale"
        assert spec.defaults == {"in_channels": 1, "out_features": 1, "image_size": (101, 101)}


@pytest.mark.parametrize("name", KERAS_COUNTS)
def test_parameter_count_matches_keras(name):
    assert count_parameters(create_model(name, in_channels=1)) == KERAS_COUNTS[name]


def _train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One Adam step on BCE-with-logits, as lens training does; returns logits and loss."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = model(images)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return logits, loss.item()


@pytest.mark.parametrize("bands", [1, 4], ids=["space", "ground"])
@pytest.mark.parametrize("name", KERAS_COUNTS)
def test_one_training_step_updates_weights(name, bands):
    torch.manual_seed(0)
    model = create_model(name, in_channels=bands).train()
    before = [p.detach().clone() for p in model.parameters()]
    images = torch.rand(2, bands, 101, 101)
    # Not a (0, 1) pair: on two images lastro_epfl's final BatchNorm makes the two logits
    # opposite, so balanced labels would give its last biases exactly zero gradient.
    labels = torch.ones(2, 1)

    logits, loss = _train_step(model, images, labels)

    assert logits.shape == (2, 1)
    assert math.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed == len(before)


@pytest.mark.parametrize("name", KERAS_COUNTS)
def test_pooling_ahead_of_the_activation_changes_no_output_or_gradient(name):
    """Max-pool commutes with a monotone activation, so the cheaper order computes the same logits
    and gradients as the published one (dropout masks drawn alike from one seed)."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=1).train()
    reference = published_order(model)
    images = torch.randn(4, 1, 101, 101)
    grads = []
    for net in (model, reference):
        torch.manual_seed(1)
        logits = net(images)
        logits.sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in net.parameters()]))
    (fast, fast_grads), (published, published_grads) = grads
    torch.testing.assert_close(fast, published, rtol=1e-5, atol=1e-5)
    # an in-place ELU differentiates from its output (rounding); biases ahead of BatchNorm have a true
    # gradient of zero, so theirs are rounding noise of order 1e-6
    for a, b in zip(fast_grads, published_grads):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-5
    assert list(model.state_dict()) == list(reference.state_dict())  # model files written before still load
    # the comparison is between two orders, not a model and its copy, wherever there is a max-pool
    has_max_pool = any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert (_activations_ahead_of_a_max_pool(reference) > 0) == has_max_pool


def _activations_ahead_of_a_max_pool(model: nn.Module) -> int:
    """How many ReLU or ELU layers compute on pixels that the max-pool right after them discards."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            kinds = [type(m) for m in module]
            count += sum(a in (nn.ReLU, nn.ELU) and b is nn.MaxPool2d for a, b in zip(kinds, kinds[1:]))
    return count


@pytest.mark.parametrize("name", KERAS_COUNTS)
def test_no_activation_runs_ahead_of_a_max_pool(name):
    """The speed-up is in place: no ReLU or ELU computes on pixels a following max-pool discards."""
    assert _activations_ahead_of_a_max_pool(create_model(name, in_channels=1)) == 0
