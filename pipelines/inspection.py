"""Look at a DALI graph without running it: its operators, where each runs, and what it outputs.

A GPU pipeline cannot be *built* on a machine without CUDA, but its graph can be
*defined*: DALI's Python front end places every operator, checks its inputs and knows
each output's device. This module walks such a graph (from the output DataNodes of
:func:`pipelines.pipeline.method_graph`) so that the CPU test suite can check a GPU
graph — every operator has a backend for the device it is placed on, its argument inputs
come from the CPU, every output sits on the GPU, the clips leave in float16 — and so that
the benchmarks can count operators per batch.

DALI offers no public graph walk; this reads ``DataNode.source`` and the operator
instances' ``inputs`` and ``spec`` (public), plus the operator class's schema name and
constructor arguments (``_op``), as DALI 2.4.0 lays them out. If a DALI upgrade moves
them, :func:`operators` raises rather than reporting an empty graph.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, NamedTuple, Optional

from nvidia.dali import Pipeline, backend

from .pipeline import method_graph


class Operator(NamedTuple):
    name: str  # the instance name in the graph
    schema: str  # the operator, e.g. "Resize", "decoders__Video"
    device: str  # "cpu", "gpu" or "mixed"
    inputs: List[tuple]  # (input name, device, is an argument input)
    arguments: dict  # constructor arguments given in Python (dtype, size...)


def define(source, planner, device: str, num_workers: int = 0) -> Dict[str, object]:
    """The output DataNodes of :func:`~.pipeline.build_pipeline`'s graph, defined but never built.

    Needs no GPU for ``device="gpu"``: only ``build()`` and ``run()`` touch CUDA.
    """
    pipe = Pipeline(batch_size=source.batch_size, num_threads=1, device_id=0 if device == "gpu" else None,
                    py_num_workers=max(1, num_workers))
    with pipe:
        nodes = method_graph(source, planner, device, num_workers)
        pipe.set_outputs(*nodes.values())
    return nodes


def operators(outputs: Iterable) -> List[Operator]:
    """Every operator that ``outputs`` (DataNodes) depend on, each once, inputs before consumers."""
    seen: Dict[int, Operator] = {}
    order: List[Operator] = []

    def visit(node):
        op = node.source
        if op is None or id(op) in seen:
            return
        for parent in op.inputs:
            visit(parent)
        try:
            impl = op._op
            schema = impl.schema.Name()
            device = impl.device
        except AttributeError as exc:  # pragma: no cover - a DALI version with another layout
            raise RuntimeError(f"cannot read operator {op.name} of this DALI version ({exc}); "
                               "pipelines.inspection reads DALI 2.4.0's graph layout") from exc
        spec = op.spec
        regular = spec.NumRegularInput()
        inputs = [(spec.InputName(i), spec.InputDevice(i), i >= regular) for i in range(spec.NumInput())]
        seen[id(op)] = entry = Operator(op.name, schema, device, inputs, dict(getattr(impl, "_init_args", {})))
        order.append(entry)

    for node in outputs:
        visit(node)
    if not order:
        raise RuntimeError("the graph has no operators: nothing to inspect")
    return order


def placement_problems(outputs: Iterable) -> List[str]:
    """What DALI would refuse or mis-place when it builds the graph: empty when none.

    Each operator must have a backend for its device (``backend.GetSchema``), read its
    argument inputs (per-sample parameters) from the CPU, and read regular inputs from the
    device it runs on (a "mixed" operator reads CPU inputs and writes GPU outputs).
    """
    problems = []
    for op in operators(outputs):
        backends = backend.GetSchema(op.schema).GetSupportedBackends()
        if op.device not in backends:
            problems.append(f"{op.name}: {op.schema} placed on {op.device} but has backends {backends}")
        for name, device, is_argument in op.inputs:
            if is_argument and device != "cpu":
                problems.append(f"{op.name}: argument input {name} is on {device}; argument inputs must be CPU")
            elif not is_argument:
                want = "cpu" if op.device in ("cpu", "mixed") else "gpu"
                if device != want:
                    problems.append(f"{op.name}: input {name} is on {device}, the {op.device} operator reads {want}")
    return problems


def output_devices(nodes: Dict[str, object]) -> Dict[str, str]:
    """The device of each named output DataNode."""
    return {name: node.device for name, node in nodes.items()}


def output_dtype(node) -> Optional[object]:
    """The ``dtype`` argument of the operator that makes ``node`` (None when it sets none)."""
    (op,) = [o for o in operators([node]) if o.name == node.source.name]
    return op.arguments.get("dtype")


def operator_counts(outputs: Iterable) -> Dict[str, int]:
    """Operators per batch by type (each runs once per batch; on GPU at least one launch each)."""
    counts = Counter(op.schema for op in operators(outputs))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
