"""A CPU autocast region inside the compiled function (bfloat16 matmuls), and a compiled
function called under autocast."""
import torch

import _zoo

torch.manual_seed(0)
LINEAR = torch.nn.Linear(16, 16)


def inside(x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = LINEAR(x) @ x.T
    return y.float().relu()


def plain(x):
    return LINEAR(x).relu()


def run():
    x = torch.randn(8, 16)
    f, g = _zoo.compile(inside), _zoo.compile(plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outside = _zoo.compare("called_under_autocast", g(x), plain(x))
    return [_zoo.compare("autocast_inside", f(x), inside(x)), outside]


EXTRA = _zoo.EXTRA
