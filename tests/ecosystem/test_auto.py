"""``PRECOMPILE_AUTO=1``: unmodified programs, each run twice in fresh processes with only
the environment changed; the second run traces nothing (Dynamo's own frame counter, over
every process of the run, is 0) and gives the first run's results.

The programs never import precompile: the ``precompile-auto.pth`` file the package installs
turns the mode on. Each process reports at exit into ``PRECOMPILE_STATS_FILE``
(precompile/auto_report.py); the tests read that file. Backends: the bare
``@torch.compile`` and ``model.compile()`` programs use Inductor (what those forms mean); the
Trainer, accelerate and DDP programs use ``aot_eager`` to keep a 2-core CI affordable
(precompile stores both the same way, see tests/ecosystem/test_zoo.py). The Trainer's model
is GPT-2: Llama-style models on transformers 5.25 hold a ``kernels`` class made in local
scope that torch refuses to store (ENGINE-FACTS.md), a limit of the serializer, not of this
mode.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from precompile.cli.run import pth_installed

pytestmark = pytest.mark.skipif(not pth_installed(), reason="precompile-auto.pth is not "
                                "installed: reinstall with `pip install -e .`")


@dataclasses.dataclass
class AutoRun:
    proc: subprocess.CompletedProcess[str]
    stats_file: Path
    results_file: Path

    def describe(self) -> str:
        return (f"rc={self.proc.returncode}\n--- stdout\n{self.proc.stdout[-3000:]}\n"
                f"--- stderr\n{self.proc.stderr[-6000:]}")

    @property
    def doc(self) -> dict[str, Any]:
        assert self.stats_file.exists(), f"no stats file\n{self.describe()}"
        return json.loads(self.stats_file.read_text())

    @property
    def stats(self) -> dict[str, Any]:
        return self.doc["stats"]

    def results(self) -> Any:
        return torch.load(self.results_file, weights_only=True)

    def assert_cold(self) -> AutoRun:
        assert self.proc.returncode == 0, self.describe()
        assert self.stats["functions_seen"] >= 1 and self.stats["saves"] >= 1, self.describe()
        assert self.stats["bypasses"] == 0, self.describe()
        return self

    def assert_warm_of(self, cold: AutoRun) -> AutoRun:
        assert self.proc.returncode == 0, self.describe()
        s = self.stats
        assert s["dynamo_frames"] == 0 and s["frames_traced"] == 0, self.describe()
        assert s["hits"] >= 1 and s["misses"] == 0 and s["saves"] == 0, self.describe()
        assert "precompile auto (pid" in self.proc.stderr, self.describe()
        _assert_same(self.results(), cold.results())
        return self


def _assert_same(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    if isinstance(got, dict):
        assert got.keys() == want.keys()
        for k in got:
            _assert_same(got[k], want[k])
    elif isinstance(got, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    elif isinstance(got, torch.Tensor):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    else:
        assert got == want


class Program:
    """A user program on disk, run by plain ``python`` with the mode set in the environment."""

    def __init__(self, root: Path, source: str, name: str = "prog.py") -> None:
        self.root = root
        self.path = root / name
        self.path.write_text(textwrap.dedent(source))
        self.cache = root / "cache"
        self.runs = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRECOMPILE_")}
        env.update(PRECOMPILE_AUTO="1", PRECOMPILE_CACHE_DIR=str(self.cache),
                   PRECOMPILE_LOG="info", TORCHINDUCTOR_CACHE_DIR=str(self.root / "inductor"),
                   PYTHONDONTWRITEBYTECODE="1", TOKENIZERS_PARALLELISM="false",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def run(self, *args: str, **env: str) -> AutoRun:
        self.runs += 1
        stats = self.root / f"stats-{self.runs}.json"
        out = self.root / f"results-{self.runs}.pt"
        proc = subprocess.run([sys.executable, str(self.path), str(out), *args],
                              capture_output=True, text=True, timeout=900, cwd=str(self.root),
                              env=self.env(PRECOMPILE_STATS_FILE=str(stats), **env))
        return AutoRun(proc, stats, out)

    def cold_then_warm(self) -> tuple[AutoRun, AutoRun]:
        cold = self.run().assert_cold()
        return cold, self.run().assert_warm_of(cold)


MODULE_LEVEL = """
    import sys
    import torch
    from torch import compile as tcompile  # before any call: the replaced one as well

    torch.manual_seed(0)

    @torch.compile
    def bare(x, y):
        return torch.relu(x @ y) + 1

    @torch.compile(backend="aot_eager", dynamic=False)
    def with_args(x):
        return torch.cos(x) * 2

    class Scale:
        def __init__(self, k):
            self.k = k

        def apply(self, x):
            return x * self.k - 1

    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
    method = torch.compile(Scale(3.0).apply, backend="eager")
    module = tcompile(net, backend="aot_eager")
    via_compiler = torch.compiler.compile(lambda x: x.sum(0), backend="eager")

    x, y = torch.randn(8, 8), torch.randn(8, 8)
    torch.save({"bare": bare(x, y), "with_args": with_args(x), "method": method(x),
                "module": module(x).detach(), "via_compiler": via_compiler(x)}, sys.argv[1])
"""


def test_module_level_compile_every_form(tmp_path: Path) -> None:
    """``@torch.compile``, ``@torch.compile(...)``, a bound method, a module through
    ``from torch import compile``, ``torch.compiler.compile``: all cached, all warm."""
    cold, warm = Program(tmp_path, MODULE_LEVEL).cold_then_warm()
    assert cold.stats["functions_seen"] == 5, cold.describe()
    assert warm.stats["hits"] == 5, warm.describe()
    assert not warm.stats["passed_to_torch"], warm.describe()


MODEL_COMPILE = """
    import sys
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(16, 32)
            self.b = torch.nn.Linear(32, 4)

        def forward(self, x):
            return self.b(torch.nn.functional.gelu(self.a(x)))

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 2)

        def forward(self, x):
            return torch.tanh(self.proj(x))

    torch.manual_seed(0)
    model = Net()
    model.compile()
    head = Head()  # a second model: the same code (Module._call_impl) compiled
    head.compile()
    x = torch.randn(4, 16)
    out = model(x)
    out.sum().backward()
    torch.save({"out": out.detach(), "grad": model.a.weight.grad,
                "head": head(out.detach()).detach()}, sys.argv[1])
"""


def test_module_compile_method(tmp_path: Path) -> None:
    """``model.compile()`` (torch.compile of the module's ``_call_impl``), forward and
    backward, Inductor. Two models compile the same code (``Module._call_impl``): each has
    a package of its own (the key names the submodule structure), both are warm."""
    cold, warm = Program(tmp_path, MODEL_COMPILE).cold_then_warm()
    packages = list((tmp_path / "cache").glob("Module._call_impl-*.pcpkg"))
    assert cold.stats["saves"] == 2 and len(packages) == 2, cold.describe()
    assert warm.stats["hits"] == 2, warm.describe()


TRAINER = """
    import sys
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64,
                                  n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = transformers.TrainingArguments(
        output_dir=sys.argv[1] + ".out", max_steps=3, per_device_train_batch_size=4,
        torch_compile=True, torch_compile_backend="aot_eager", use_cpu=True,
        report_to=[], save_strategy="no", logging_strategy="no", seed=0,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    result = trainer.train()
    torch.save({"loss": torch.tensor(result.training_loss),
                "weight": model.transformer.h[0].attn.c_attn.weight.detach()}, sys.argv[1])
"""


def test_hf_trainer_torch_compile(tmp_path: Path) -> None:
    """``Trainer`` with ``TrainingArguments(torch_compile=True)``: three steps of a tiny
    GPT-2; the library calls torch.compile (through accelerate), not the program."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    Program(tmp_path, TRAINER).cold_then_warm()


ACCELERATE = """
    import sys
    import torch
    from accelerate import Accelerator

    torch.manual_seed(0)
    accelerator = Accelerator(dynamo_backend="aot_eager", cpu=True)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net, opt = accelerator.prepare(net, opt)
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(net(x), y)
        accelerator.backward(loss)
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    torch.save({"losses": torch.stack(losses)}, sys.argv[1])
"""


def test_accelerate_dynamo_backend(tmp_path: Path) -> None:
    """accelerate's ``Accelerator(dynamo_backend=...)`` compiles in ``prepare``."""
    pytest.importorskip("accelerate")
    Program(tmp_path, ACCELERATE).cold_then_warm()


DDP_SPAWN = """
    import os
    import socket
    import sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    def rank_main(rank, port, out):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 2))
        ddp = torch.compile(torch.nn.parallel.DistributedDataParallel(net),
                            backend="aot_eager")
        out_ = ddp(torch.randn(4, 8) + rank)
        out_.sum().backward()
        if rank == 0:
            torch.save({"out": out_.detach(), "grad": net[0].weight.grad}, out)
        dist.destroy_process_group()

    if __name__ == "__main__":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(rank_main, args=(port, sys.argv[1]), nprocs=2)
"""


def test_ddp_two_ranks_spawned(tmp_path: Path) -> None:
    """``torch.multiprocessing.spawn`` starts two gloo ranks that inherit the mode; each
    compiles DDP; both are warm in the second run."""
    prog = Program(tmp_path, DDP_SPAWN)
    cold, warm = prog.cold_then_warm()
    for run in (cold, warm):  # the parent never compiles: it writes nothing
        assert len(run.doc["processes"]) == 2, run.describe()
    for process in warm.doc["processes"]:
        assert process["stats"]["dynamo_frames"] == 0, warm.describe()


NO_COMPILE = """
    import json
    import sys
    import torch

    out = torch.ones(3) * 2
    torch.save({"out": out}, sys.argv[1])
    print(json.dumps({"precompile_imported": "precompile" in sys.modules,
                      "compile_module": torch.compile.__module__,
                      "replaced": hasattr(torch.compile, "_precompile_auto_original")}))
"""


def _report(run: AutoRun) -> dict[str, Any]:
    assert run.proc.returncode == 0, run.describe()
    return json.loads(run.proc.stdout.strip().splitlines()[-1])


def test_program_that_never_compiles(tmp_path: Path) -> None:
    """Unset: precompile is not even imported. Set: torch.compile is replaced, and a
    program that never calls it writes nothing (no package, no stats file)."""
    prog = Program(tmp_path, NO_COMPILE)
    unset = prog.run(PRECOMPILE_AUTO="")
    assert _report(unset) == {"precompile_imported": False, "compile_module": "torch",
                              "replaced": False}, unset.describe()
    off = prog.run(PRECOMPILE_AUTO="0")
    assert _report(off)["precompile_imported"] is False, off.describe()
    on = prog.run()
    assert _report(on)["replaced"] is True, on.describe()
    assert not on.stats_file.exists() and not prog.cache.exists(), on.describe()
    assert "precompile auto" not in on.proc.stderr, on.describe()


def test_import_torch_does_not_load_precompile_when_unset(tmp_path: Path) -> None:
    """``python -X importtime -c "import torch"`` lists no precompile module without the
    variable (the .pth line reads one variable and stops)."""
    prog = Program(tmp_path, "")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch"],
                          capture_output=True, text=True, timeout=300,
                          env=prog.env(PRECOMPILE_AUTO=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "torch" in modules
    assert not [m for m in modules if m.split(".")[0] == "precompile"], proc.stderr


EXPLICIT = """
    import os
    import sys
    import torch
    import precompile

    def f(x):
        return torch.sin(x) * 3

    if os.environ.get("FORM") == "decorator":  # precompile's own decorator, mode or not
        g = precompile.cached(f, backend="eager")
    elif os.environ.get("FORM") == "both":  # explicit on top of the mode's: cached once
        g = precompile.cached(torch.compile(f, backend="eager"))
    else:
        g = torch.compile(f, backend="eager")
    torch.save({"out": g(torch.ones(4))}, sys.argv[1])
    inner = g._precompile.target
    print("TARGET", inner is f)
"""


def test_same_packages_as_the_explicit_decorator(tmp_path: Path) -> None:
    """A package written by ``precompile.cached`` (mode off) is what ``torch.compile``
    under the mode finds, and ``precompile.cached(torch.compile(f))`` under the mode caches
    ``f`` once (its target is ``f`` itself, not the mode's wrapper)."""
    prog = Program(tmp_path, EXPLICIT)
    written = prog.run(PRECOMPILE_AUTO="", FORM="decorator")
    assert written.proc.returncode == 0 and "TARGET True" in written.proc.stdout, \
        written.describe()
    assert len(list(prog.cache.glob("f-*.pcpkg"))) == 1, written.describe()
    auto = prog.run(FORM="mode")
    auto.assert_warm_of(written)
    both = prog.run(FORM="both")
    both.assert_warm_of(written)
    assert "TARGET True" in both.proc.stdout and both.stats["hits"] == 1, both.describe()
    assert len(list(prog.cache.glob("f-*.pcpkg"))) == 1


DISABLED = """
    import sys
    import torch

    f = torch.compile(lambda x: x + 1, backend="eager")
    g = torch.compile(lambda x: x * 2, backend="eager", recompile_limit=4)
    torch.save({"f": f(torch.ones(2)), "g": g(torch.ones(2))}, sys.argv[1])
    print("REPLACED", hasattr(torch.compile, "_precompile_auto_original"))
"""


def test_disable_wins_and_unknown_arguments_stay_torch(tmp_path: Path) -> None:
    prog = Program(tmp_path, DISABLED)
    off = prog.run(PRECOMPILE_DISABLE="1")
    assert off.proc.returncode == 0 and "REPLACED False" in off.proc.stdout, off.describe()
    assert not prog.cache.exists() and not off.stats_file.exists(), off.describe()
    on = prog.run()
    assert on.proc.returncode == 0, on.describe()
    assert on.stats["functions_seen"] == 1, on.describe()
    assert any("recompile_limit=4" in r for r in on.stats["passed_to_torch"]), on.describe()
    assert "left to torch: " in on.proc.stderr, on.describe()


def test_precompile_run_and_stats(tmp_path: Path) -> None:
    """``python -m precompile run script.py`` turns the mode on for a script without the
    variable; ``precompile stats`` reads the file the processes wrote."""
    prog = Program(tmp_path, DISABLED, name="tool.py")
    stats = tmp_path / "run-stats.json"
    env = prog.env(PRECOMPILE_AUTO="", PRECOMPILE_STATS_FILE=str(stats))
    out = tmp_path / "run.pt"
    proc = subprocess.run([sys.executable, "-m", "precompile", "run", "--", str(prog.path),
                           str(out)], capture_output=True, text=True, timeout=600,
                          cwd=str(tmp_path), env=env)
    assert proc.returncode == 0 and "REPLACED True" in proc.stdout, proc.stderr[-4000:]
    shown = subprocess.run([sys.executable, "-m", "precompile", "stats", "--file",
                            str(stats)], capture_output=True, text=True, timeout=120, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "1 misses, 1 saves" in shown.stdout and "functions" in shown.stdout, shown.stdout


def test_precompile_run_a_command(tmp_path: Path) -> None:
    """``precompile run -- COMMAND``: the command (here another python) gets the variable
    and turns the mode on through the .pth file."""
    prog = Program(tmp_path, NO_COMPILE)
    proc = subprocess.run([sys.executable, "-m", "precompile", "run", "--", sys.executable,
                           str(prog.path), str(tmp_path / "out.pt")], capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path),
                          env=prog.env(PRECOMPILE_AUTO=""))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["replaced"] is True, proc.stdout
