"""Higher-order operators (``torch.cond``, ``while_loop``, ``map``, ``scan``, custom autograd
Functions, ``wrap``...): letting AOTAutograd store graphs that call them, soundly.

AOTAutograd's cache produces the artifact precompile stores, and it refuses any graph with a
HOP it does not know to be cacheable (``check_node_safe`` in
torch/_functorch/_aot_autograd/autograd_cache.py: ``HigherOrderOperator.cacheable()``, False
for ``cond``, ``while_loop``, ``map_impl``, ``autograd_function_apply``...). A HOP's
behaviour is its operands plus its subgraphs, which Dynamo places in the graph module as
``GraphModule`` attributes; the cache key pickles those with the graph (their code
included), but ``check_node_safe`` looks only at the top-level graph's nodes, never inside
a subgraph. So precompile marks the HOPs below cacheable while one of its frames compiles
*and* runs torch's own per-node safety check over every node of every nested subgraph: a
branch that calls arbitrary Python (an ``allow_in_graph`` function, a lambda...) is refused
exactly as it would be at the top level, and a HOP handed a Python callable that is not a
subgraph of the graph is refused too.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from .ddp import SPLIT_GRAPH_HINT, SPLIT_GRAPH_REFUSAL

# HOPs whose result is determined by their subgraphs and their (tensor, int, plain-data)
# operands, named as ``HigherOrderOperator.cacheable()`` looks them up. Left out on
# purpose: those that call a Python function by reference (``flat_apply``,
# ``invoke_leaf_function``, ``dynamo_bypassing_wrapper``, ``custom_function_call``), print
# or carry effects (``print``, ``with_effects``), and torchbind/delegate calls.
STORABLE_HOPS = (
    "cond",
    "while_loop",
    "while_loop_stack_output",
    "map_impl",
    "scan",
    "associative_scan",
    "autograd_function_apply",
    "wrap",
    "wrap_with_set_grad_enabled",
    "wrap_with_autocast",
    "hints_wrapper",
)
HOP_NAMESPACE = "torch.ops.higher_order"

_refusal = threading.local()


def storable_hop_names() -> tuple[str, ...]:
    """The names ``unsafe_marked_cacheable_functions`` must hold to mark ``STORABLE_HOPS``."""
    return tuple(f"{HOP_NAMESPACE}.{name}" for name in STORABLE_HOPS)


def _check_subgraphs(gm: torch.fx.GraphModule, check_node_safe: Any, bypass: type) -> None:
    """torch's per-node safety check on every node of every subgraph nested in ``gm``, and
    no HOP given a callable that is not one of the graph's own subgraphs."""
    for module in gm.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if module is not gm:
                check_node_safe(node)
            if isinstance(node.target, torch._ops.HigherOrderOperator):
                _check_hop_operands(node, bypass)


def _check_hop_operands(node: torch.fx.Node, bypass: type) -> None:
    leaves = torch.utils._pytree.tree_leaves((node.args, node.kwargs))
    for leaf in leaves:
        if callable(leaf) and not isinstance(leaf, (torch.fx.Node, torch.fx.GraphModule)):
            raise bypass(f"{node.target.name()} is given the Python callable {leaf!r}, "
                         "which is not a subgraph of the graph")


@contextlib.contextmanager
def checking_subgraphs() -> Iterator[None]:
    """While one of precompile's frames compiles: AOTAutograd's graph check also checks
    every subgraph (see the module docstring); a refusal's reason is kept for
    ``take_cache_refusal``.

    The check is installed once, process-wide, and counts the frames recording now rather
    than being swapped in and out: with compiles on several threads, one that finishes
    must not switch the check off under another. Outside a recording it checks subgraphs
    only of graphs that call one of ``STORABLE_HOPS`` (torch refuses those unless they were
    marked cacheable, so torch's own behaviour is otherwise unchanged).
    """
    global _recording
    _refusal.reason = None
    with _lock:
        _install_check()
        _recording += 1
    try:
        yield
    finally:
        with _lock:
            _recording -= 1


_lock = threading.Lock()
_recording = 0


def _install_check() -> None:
    from torch._functorch._aot_autograd import autograd_cache

    real = autograd_cache.check_cacheable
    if getattr(real, "_precompile_checks_subgraphs", False):
        return

    def check_cacheable(gm: torch.fx.GraphModule) -> None:
        recording = _recording > 0
        try:
            real(gm)
            if recording or _calls_storable_hop(gm):
                _check_subgraphs(gm, autograd_cache.check_node_safe,
                                 autograd_cache.BypassAOTAutogradCache)
        except autograd_cache.BypassAOTAutogradCache as e:
            if recording:
                _refusal.reason = " ".join(str(e).split())
            raise

    check_cacheable._precompile_checks_subgraphs = True  # type: ignore[attr-defined]
    autograd_cache.check_cacheable = check_cacheable
    _hear_save_errors(autograd_cache.AOTAutogradCache)


def _hear_save_errors(cache: Any) -> None:
    """Keep why AOTAutograd could not save a graph it compiled for a recording frame (an
    object in the graph it cannot pickle, say), so the entry's bypass reason names it
    rather than only saying no artifact arrived."""
    real = getattr(cache, "_handle_save_error", None)
    if real is None:  # another release's cache: the generic reason stays
        return

    def handle_save_error(e: Exception, remote: bool, is_bypass: bool) -> None:
        if _recording > 0:
            _refusal.reason = ("" if is_bypass else "unable to serialize: ") + " ".join(
                str(e).split())
        return real(e, remote, is_bypass)

    cache._handle_save_error = staticmethod(handle_save_error)


def _calls_storable_hop(gm: torch.fx.GraphModule) -> bool:
    names = set(STORABLE_HOPS)
    return any(isinstance(node.target, torch._ops.HigherOrderOperator)
               and node.target.name() in names
               for module in gm.modules() if isinstance(module, torch.fx.GraphModule)
               for node in module.graph.nodes)


def take_cache_refusal() -> str | None:
    """Why AOTAutograd's cache last refused a graph on this thread (then forgotten), with
    what to do where there is something (a graph DDPOptimizer split)."""
    reason = getattr(_refusal, "reason", None)
    _refusal.reason = None
    if reason and SPLIT_GRAPH_REFUSAL in reason:
        reason = f"{reason}: {SPLIT_GRAPH_HINT}"
    return reason
