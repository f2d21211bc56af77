"""What users do with a compiled model besides calling it: copy.deepcopy (EMA, reference
copies), pickle / torch.save of the whole module, state_dict(). Each works as under plain
torch.compile, before and after the first call, and the copies compute with their own weights.
The first call of the original is the warm start."""
import copy
import io
import os
import pickle

import torch

import _zoo


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(self.lin(x))


def _copies(compiled, x, tag):
    # A copy is another module object: Dynamo's identity guards send it through its own
    # compile, as under plain torch.compile, so it is not part of a warm run's "traced nothing".
    with torch.compiler.set_stance("default"):
        return _copies_of(compiled, x, tag)


def _copies_of(compiled, x, tag):
    dup = copy.deepcopy(compiled)
    with torch.no_grad():
        dup.lin.weight.mul_(2)
    buf = io.BytesIO()
    torch.save(compiled, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    pickled = pickle.loads(pickle.dumps(compiled))
    keys = sorted(compiled.state_dict())
    return [(f"{tag}_deepcopy_own_weights", bool((dup(x) != compiled(x)).any()), True),
            (f"{tag}_torch_save", saved(x), compiled(x)),
            (f"{tag}_pickle", pickled(x), compiled(x)),
            (f"{tag}_state_dict", keys, ["_orig_mod.lin.bias", "_orig_mod.lin.weight"])]


def run():
    torch.manual_seed(0)
    net, x = Net(), torch.randn(2, 4)
    want = net(x)
    compiled = _zoo.compile(net)
    # Copies made before the first call compile for themselves, as under plain torch.compile
    # (the package is installed by the first call); the tests ask for them in the cold run.
    before = _zoo.MODE != "eager" and os.environ.get("ZOO_COPIES_BEFORE") == "1"
    rows = _copies(compiled, x, "before") if before else []
    rows.append(_zoo.compare("first_call", compiled(x), want))
    if _zoo.MODE != "eager":
        rows += _copies(compiled, x, "after")
    return rows


EXTRA = _zoo.EXTRA
