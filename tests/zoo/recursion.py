"""PyTorch's test_graph_break_bomb shape: a function that recurses into itself with a graph
break at every level (the same resume code entered at several depths, bound under several
global names, some entries with no graph), and a frame Dynamo cannot compile at all (a graph
break inside ``try``) that it runs eagerly: the warm process must skip it too."""
import torch

import _zoo


def descend(x, n):
    x = x.sin()
    torch._dynamo.graph_break()
    if n > 0:
        x = descend(x, n - 1)
    return x * 2


def guarded(x):
    try:
        y = x * 2
        torch._dynamo.graph_break()
        return y + 1
    except RuntimeError:
        return x


def top(x):
    return guarded(descend(x, 4)) + 1


def run():
    x = torch.randn(3)
    return [_zoo.compare("y", _zoo.compile(top)(x), top(x))]


EXTRA = _zoo.EXTRA
