"""A committee of lens finders as one network: the mean of its members' calibrated probabilities.

Members keep their own architectures and temperatures; the committee answers with the logit of
the mean probability, so every command that takes a lens finder takes a committee (`lensml
ensemble` writes one).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import create_model, register_model

LOGIT_CLAMP = 1e-7  # probabilities kept inside (eps, 1 - eps), so the logit stays finite


class LensEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperatures = [float(t) for t in temperatures]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x) / t) for m, t in zip(self.members, self.temperatures)]).mean(0)
        p = p.clamp(LOGIT_CLAMP, 1.0 - LOGIT_CLAMP)
        return torch.log(p) - torch.log1p(-p)


@register_model(
    "lens_ensemble", task="lens", inputs=("bands",), norm="zscale",
    description="a committee of lens finders (`lensml ensemble`): mean of the members' calibrated probabilities",
    members=[], in_channels=1, out_features=1, image_size=(101, 101),
)
def lens_ensemble(members: list[dict], in_channels: int = 1, out_features: int = 1,
                  image_size: tuple[int, int] = (101, 101)) -> nn.Module:
    """`members`: one {"arch", "arch_kwargs", "temperature"} per member, as the model file records them."""
    nets = [create_model(m["arch"], **m["arch_kwargs"]) for m in members]
    return LensEnsemble(nets, [m.get("temperature", 1.0) for m in members])
