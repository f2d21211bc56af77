"""A DDP training step as users write it, run as a script: 2 gloo ranks started by
``torch.multiprocessing.spawn`` with ``file://`` init, the model class defined in this very
script (so each rank runs it as ``__mp_main__``, whose functions read a copy of the module's
globals), ``precompile.cached(torch.compile(DistributedDataParallel(net)))``, Inductor,
``out.pow(2).mean().backward()``, every rank against an eager DDP twin.

    python ddp_spawn.py cold|warm      (warm: fail_on_recompile on every rank)

With ``BUCKETS=many`` the net is wider than DDP's gradient bucket (``bucket_cap_mb=1``), so
DDPOptimizer splits its graph by bucket; ``OPTIMIZE_DDP=0`` sets
``torch._dynamo.config.optimize_ddp = False`` (one graph).

Prints ``RESULT {rank: {...}}`` with each rank's frames traced, precompile stats and whether
its output and gradients match eager.
"""
import copy
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import precompile

WORLD = 2


MANY_BUCKETS = os.environ.get("BUCKETS") == "many"
WIDTH = 512 if MANY_BUCKETS else 32  # 1 MiB of fc2 weights: a bucket of its own


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, WIDTH)
        self.fc2 = torch.nn.Linear(WIDTH, WIDTH)
        self.fc3 = torch.nn.Linear(WIDTH, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def worker(rank: int, init_file: str, stance: str, out_dir: str) -> None:
    if os.environ.get("OPTIMIZE_DDP") == "0":
        torch._dynamo.config.optimize_ddp = False
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        torch.manual_seed(0)
        net = Net()
        twin = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(net))
        ddp = torch.nn.parallel.DistributedDataParallel(
            net, **({"bucket_cap_mb": 1} if MANY_BUCKETS else {}))
        compiled = precompile.cached(torch.compile(ddp))
        x = torch.randn(8, 16) + rank
        torch.compiler.set_stance(stance)
        out = compiled(x)
        out.pow(2).mean().backward()
        torch.compiler.set_stance("default")
        want = twin(x)
        want.pow(2).mean().backward()
        pairs = [(out.detach(), want.detach())] + [
            (p.grad, q.grad) for p, q in zip(net.parameters(), twin.module.parameters())]
        precompile.flush()
        from torch._dynamo.utils import counters

        stats = precompile.stats()
        report = {"same": all(torch.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in pairs),
                  "frames": int(counters["frames"].get("total", 0)),
                  **{k: stats.get(k) for k in ("hits", "misses", "bypasses", "saves",
                                               "miss_reasons")}}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(report, f, default=str)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    stance = "fail_on_recompile" if sys.argv[1] == "warm" else "default"
    out_dir = tempfile.mkdtemp()
    mp.spawn(worker, args=(os.path.join(out_dir, "init"), stance, out_dir), nprocs=WORLD)
    ranks = {}
    for rank in range(WORLD):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            ranks[rank] = json.load(f)
    print("RESULT " + json.dumps(ranks))
