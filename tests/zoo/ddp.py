"""A DistributedDataParallel module compiled on 2 gloo ranks (DDPOptimizer splits the graph at
bucket boundaries), forward + backward, every rank against an eager DDP twin. Every rank
loads the same package; single flight lets one rank compile while the other waits."""
import copy
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import _zoo

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, stance: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(32, 512), torch.nn.ReLU(),
                                  torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                  torch.nn.Linear(512, 8))
        twin = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(net))
        ddp = torch.nn.parallel.DistributedDataParallel(net, bucket_cap_mb=1)
        compiled = _zoo.compile(ddp)
        x = torch.randn(4, 32) + rank
        torch.compiler.set_stance(stance)
        out = compiled(x)
        out.sum().backward()
        torch.compiler.set_stance("default")
        want = twin(x)
        want.sum().backward()
        pairs = [(out.detach(), want.detach())] + [
            (p.grad, q.grad) for p, q in zip(net.parameters(), twin.module.parameters())]
        for got_, want_ in pairs:
            _zoo.compare("", got_, want_)
        # plain values only: tensors sent through a queue die with this process
        report = {"out_and_grads": all(torch.allclose(g, w, rtol=1e-4, atol=1e-5)
                                       for g, w in pairs),
                  "max_diff": _zoo.EXTRA["max_diff"]}
        from torch._dynamo.utils import counters

        stats = {"frames_traced": int(counters["frames"].get("total", 0))}
        if _zoo.MODE == "precompile":
            import precompile

            precompile.flush()
            stats = precompile.stats()
        queue.put((rank, report, stats))
    finally:
        dist.destroy_process_group()


def run():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    stance = _zoo.current_stance()  # the driver's (fail_on_recompile when warm), for each rank
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, stance, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    rows = []
    _zoo.EXTRA["ranks"] = {}
    for rank, report, stats in sorted(results, key=lambda r: r[0]):
        rows.append((f"rank{rank}_out_and_grads", report["out_and_grads"], True))
        _zoo.EXTRA["max_diff"] = max(_zoo.EXTRA["max_diff"], report["max_diff"])
        _zoo.EXTRA["ranks"][rank] = {k: stats.get(k) for k in
                                     ("frames_traced", "hits", "bypasses", "miss_reasons")}
    return rows


EXTRA = _zoo.EXTRA
