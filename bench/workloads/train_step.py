"""A training step: compiled forward + loss (and its AOTAutograd backward); ``backward()``
and the SGD-with-momentum step run outside the compiled region. The output is the loss,
the gradients and the parameters after the first optimizer step, so "time to first output"
is the time to the first completed optimizer step, and all three are checked against eager.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from .base import Built, seeded

DESCRIPTION = ("training step: MLP classifier 256-512-512-10, cross-entropy; backward + "
               "SGD(momentum) step outside the compiled region; batch 64")


class WithLoss(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(x), y)


def build(batch: int = 64) -> Built:
    seeded()
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(),
                          nn.Linear(512, 10))
    target = WithLoss(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    initial = copy.deepcopy(model.state_dict())
    initial_opt = copy.deepcopy(opt.state_dict())
    x = torch.randn(batch, 256)
    y = torch.randint(0, 10, (batch,))

    def run(fn, inputs):
        opt.zero_grad(set_to_none=True)
        loss = fn(*inputs)
        loss.backward()
        grads = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        params = [p.detach().clone() for p in model.parameters()]
        return {"loss": loss.detach(), "grads": grads, "params_after_step": params}

    def reset():
        model.load_state_dict(initial)
        opt.load_state_dict(initial_opt)

    return Built(target, (x, y), run=run, reset=reset)
