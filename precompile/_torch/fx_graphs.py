"""``backend="eager"``'s artifact, the FX graph Dynamo built, to bytes and back, with the
subgraph modules of its higher-order operators.

``pickle`` of a ``GraphModule`` stores only its generated Python code and rebuilds the graph
by symbolically tracing that code again (torch/fx/graph_module.py ``reduce_graph_module``).
A graph that calls a higher-order operator cannot be traced that way: ``torch.cond`` and its
kind reject FX proxies as operands ("can only be of (Tensor, int, SymInt) but got (Proxy,)").
So precompile stores the graph itself, node by node (op, name, target, arguments), and
rebuilds it without tracing: each nested ``GraphModule`` (a branch of ``cond``, a loop body,
a custom autograd Function's forward and backward) the same way. Node metadata is left out:
the fake tensors in it belong to the compiling process, and running the graph never reads it.
Operators are stored by name (``torch.ops.aten.add.Tensor``, ``torch.ops.higher_order.cond``),
functions the way pickle stores them, by importable name.
"""
from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

import torch

NodeData = tuple[str, str, Any, Any, Any]  # op, name, target, args, kwargs


@dataclasses.dataclass(frozen=True)
class _NodeRef:
    """A node's argument that is another node: its position in the graph."""

    index: int


class _GraphModulePickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.fx.GraphModule):
            return _rebuild_graph_module, (_module_state(obj), _graph_nodes(obj.graph),
                                           obj.graph._codegen)
        if isinstance(obj, torch._ops.HigherOrderOperator):
            return _higher_order_op, (obj.name(),)
        if isinstance(obj, torch._ops.OpOverload):
            return _operator, (obj.namespace, obj._opname, obj._overloadname)
        if isinstance(obj, torch._ops.OpOverloadPacket):
            namespace, name = obj._qualified_op_name.split("::", 1)
            return _operator, (namespace, name, None)
        return NotImplemented


def dumps_graph_module(gm: torch.fx.GraphModule) -> bytes:
    """``gm`` with its nested graph modules as bytes (``loads_graph_module`` reverses it)."""
    buffer = io.BytesIO()
    _GraphModulePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(gm)
    return buffer.getvalue()


def loads_graph_module(data: bytes) -> torch.fx.GraphModule:
    gm = pickle.loads(data)
    if not isinstance(gm, torch.fx.GraphModule):
        raise TypeError(f"stored eager graph is a {type(gm).__name__}, not a GraphModule")
    return gm


def _module_state(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """What the module holds besides its graph and the code generated from it."""
    state = gm.__dict__.copy()
    for derived in ("_graph", "_code", "_lineno_map", "_prologue_start"):
        state.pop(derived, None)
    return state


def _graph_nodes(graph: torch.fx.Graph) -> list[NodeData]:
    index = {node: i for i, node in enumerate(graph.nodes)}

    def ref(node: torch.fx.Node) -> _NodeRef:
        return _NodeRef(index[node])

    return [(node.op, node.name, node.target, torch.fx.node.map_arg(node.args, ref),
             torch.fx.node.map_arg(node.kwargs, ref)) for node in graph.nodes]


def _rebuild_graph_module(state: dict[str, Any], nodes: list[NodeData],
                          codegen: Any) -> torch.fx.GraphModule:
    """The module as ``GraphModule(root, graph)`` builds it, from its stored state and nodes
    (torch/fx/graph_module.py ``_deserialize_graph_module``, with the graph given, not
    traced)."""
    root = torch.nn.Module()
    root.__dict__.update(state)
    graph = torch.fx.Graph(tracer_cls=state.get("_tracer_cls"),
                           tracer_extras=state.get("_tracer_extras"))
    built: list[torch.fx.Node] = []

    def node_of(value: Any) -> Any:
        return built[value.index] if isinstance(value, _NodeRef) else value

    for op, name, target, args, kwargs in nodes:
        args = torch.fx.node.map_aggregate(args, node_of)
        kwargs = torch.fx.node.map_aggregate(kwargs, node_of)
        built.append(graph.create_node(op, target, args, kwargs, name=name))
    graph._codegen = codegen
    gm = torch.fx.GraphModule(root, graph, class_name=state.get("_graphmodule_cls_name",
                                                                  "GraphModule"))
    for key, value in state.items():
        if not hasattr(gm, key):
            setattr(gm, key, value)
    return gm


def _higher_order_op(name: str) -> Any:
    return getattr(torch.ops.higher_order, name)


def _operator(namespace: str, name: str, overload: str | None) -> Any:
    packet = getattr(getattr(torch.ops, namespace), name)
    return packet if overload is None else getattr(packet, overload)
