"""Compiled optimizer steps (``@torch.compile def step(): opt.step()``): AdamW and Adam with
existing state (a run resumed from a checkpoint), and SGD with momentum, whose state is
created inside the first compiled step; with ``ZOO_FRESH_STATE=1`` all three start a fresh
job (no state: Dynamo creates it while tracing the first step). Compared with an eager twin
after three steps."""
import os

import torch

import _zoo


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def _train(name: str, make_opt, resumed: bool):
    model, twin = _net(), _net()
    opt, twin_opt = make_opt(model.parameters()), make_opt(twin.parameters())
    step = _zoo.compile(opt.step)
    xs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    if resumed:  # one eager step first: the optimizer state exists, as after load_state_dict
        for net, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad(), net(xs[0]).sum().backward(), o.step()
    for x in xs[1:]:
        for net, o, fn in ((model, opt, step), (twin, twin_opt, twin_opt.step)):
            o.zero_grad(), net(x).sum().backward(), fn()
    return _zoo.compare(name, [p.detach() for p in model.parameters()],
                        [p.detach() for p in twin.parameters()])


def run():
    fresh = os.environ.get("ZOO_FRESH_STATE") == "1"
    return [
        _train("adamw", lambda p: torch.optim.AdamW(p, lr=0.01), resumed=not fresh),
        _train("adam", lambda p: torch.optim.Adam(p, lr=0.01), resumed=not fresh),
        _train("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
               resumed=not fresh),
    ]


EXTRA = _zoo.EXTRA
