"""Per-layer TensorRT profiles attributed to network parts (the per-block table's "in context" mode).

The torch exporter names every ONNX node after the module scope it ran in
(``/stage3/stage3.0/conv1/conv/Conv``), and ``dfseg.parts.Part.name`` is that module path
(``stage3.0``), so a layer can be traced back to its part.  TensorRT renames layers when it fuses
them; the names keep the ONNX node names inside:

* ``A + B + C``                              vertical fusion (conv + bias + relu ...)
* ``PWN(A, PWN(B))``                          pointwise fusion (TensorRT 8.4+ / 10)
* ``A || B``                                  horizontal fusion
* ``{ForeignNode[A...B]}``                    a Myelin region from node A to node B (TensorRT 8.5+)
* ``Reformatting CopyNode for Input Tensor 0 to A``   layout/precision conversion before A

A layer whose node names all map to one part is charged to that part.  One spanning several parts
(a Myelin region) is split evenly between them and the amount is reported as ``shared_ms``.  A Myelin
name gives only its first and last node; the region holds every node between them in the graph's
order, so the parts in between share its time too: exactly with the ONNX file's node order
(``node_order``, read by ``dfseg.onnx_wire`` without the onnx package), else in network-part order.
Reformatting layers, unnamed layers (``(Unnamed Layer* 12) [Shuffle]``, ``639 copy``) and nodes
outside any part (a top-level ``/Resize``) are not guessed at: they are reported under
``unattributed`` by category.

Device side: Python 3.6, no torch; tensorrt is only touched by ``collect_layer_times``.
"""

import re
from statistics import median
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from ...arch import Arch
from ...parts import network_parts

REFORMATTING = "reformatting"
UNNAMED = "unnamed layers"
OUTSIDE_PARTS = "outside any part"

_NODE = re.compile(r"/[A-Za-z0-9_.:\-]+(?:/[A-Za-z0-9_.:\-]+)*")


def module_path_of_node(node_name: str) -> str:
    """``/stage3/stage3.0/conv1/conv/Conv`` -> ``stage3.0.conv1.conv``; a root-level node gives ``""``.

    torch writes one scope component per module call; a child of a container is spelled
    ``parent.index`` (``stage3.0`` inside ``stage3``, ``downsample.0`` inside ``downsample``), so a
    component that starts with the last segments of the current path extends it rather than repeating them.
    """
    path = []  # type: List[str]
    for component in node_name.strip().split("/")[1:-1]:
        segments = component.split(".")
        overlap = 0
        for k in range(min(len(path), len(segments) - 1), 0, -1):
            if path[-k:] == segments[:k]:
                overlap = k
                break
        path.extend(segments[overlap:])
    return ".".join(path)


def part_of_node(node_name: str, part_names: Sequence[str]) -> Optional[str]:
    """The part (``Part.name``) an ONNX node belongs to: the longest part name that is its module
    path or a dotted prefix of it; None outside every part."""
    path = module_path_of_node(node_name)
    best = None  # type: Optional[str]
    for name in part_names:
        if (path == name or path.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def node_names_in_layer(layer_name: str) -> List[str]:
    """The ONNX node names inside a TensorRT layer name (fused, pointwise, Myelin forms)."""
    # "{ForeignNode[/a/B.../c/D]}" joins its first and last node with "...".
    return [name.rstrip(".") for name in _NODE.findall(layer_name.replace("...", " "))]


class Attribution(NamedTuple):
    parts: Dict[str, float]  # Part.name -> ms per inference
    unattributed: Dict[str, float]  # category -> ms per inference
    shared_ms: float  # time of layers spanning several parts (already split into ``parts``)
    total_ms: float
    layers: Dict[str, List[str]]  # Part.name or category -> layer names charged there

    @property
    def attributed_ms(self) -> float:
        return sum(self.parts.values())


MYELIN = "{ForeignNode["


def _myelin_span(layer: str, nodes: List[str], node_order: Optional[Sequence[str]]) -> List[str]:
    """Every node of a ``{ForeignNode[first...last]}`` region, where ``node_order`` knows both ends."""
    if MYELIN not in layer or len(nodes) != 2 or not node_order:
        return nodes
    position = {name: index for index, name in enumerate(node_order)}
    if nodes[0] not in position or nodes[1] not in position:
        return nodes
    first, last = sorted((position[nodes[0]], position[nodes[1]]))
    return list(node_order[first:last + 1])


def _parts_between(owners: List[str], part_names: Sequence[str]) -> List[str]:
    """The parts from the first to the last of ``owners`` in network order."""
    indices = [part_names.index(owner) for owner in owners]
    return list(part_names[min(indices):max(indices) + 1])


def attribute_layers(layer_ms: Dict[str, float], part_names: Sequence[str],
                     node_order: Optional[Sequence[str]] = None) -> Attribution:
    """Charge each layer's time (ms per inference) to the parts its ONNX nodes belong to; ``node_order``
    (the ONNX graph's node names in order) places the inside of Myelin regions."""
    parts = {name: 0.0 for name in part_names}
    unattributed = {}  # type: Dict[str, float]
    layers = {}  # type: Dict[str, List[str]]
    shared = 0.0

    def charge(bucket: Dict[str, float], key: str, ms: float, layer: str) -> None:
        bucket[key] = bucket.get(key, 0.0) + ms
        layers.setdefault(key, []).append(layer)

    for layer, ms in layer_ms.items():
        if layer.startswith("Reformatting CopyNode"):
            charge(unattributed, REFORMATTING, ms, layer)
            continue
        nodes = _myelin_span(layer, node_names_in_layer(layer), node_order)
        if not nodes:
            charge(unattributed, UNNAMED, ms, layer)
            continue
        owners = []  # type: List[str]
        for node in nodes:
            owner = part_of_node(node, part_names)
            if owner is not None and owner not in owners:
                owners.append(owner)
        if not owners:
            charge(unattributed, OUTSIDE_PARTS, ms, layer)
            continue
        if MYELIN in layer and not node_order:
            owners = _parts_between(owners, part_names)
        if len(owners) > 1:
            shared += ms
        for owner in owners:
            charge(parts, owner, ms / len(owners), layer)
    total = sum(layer_ms.values())
    return Attribution(parts, unattributed, shared, total, layers)


def per_part_ms(layer_ms: Dict[str, float], arch: Arch, height: int, width: int,
                node_order: Optional[Sequence[str]] = None) -> Attribution:
    """Attribution of a whole network's per-layer profile to ``network_parts(arch, height, width)``."""
    return attribute_layers(layer_ms, [part.name for part in network_parts(arch, height, width)], node_order)


def in_context_table(layer_ms: Dict[str, float], arch: Arch, height: int, width: int,
                     node_order: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """{Part.key: ms} measured inside the whole network (the latency table's "in context" mode).

    Parts with the same key (identical shapes at different depths) are averaged.  Parts that got no
    time at all (every layer of theirs was fused into a neighbour) are left out rather than entered
    as 0 ms: the table then reports them missing instead of silently cheap.
    """
    attribution = per_part_ms(layer_ms, arch, height, width, node_order)
    sums = {}  # type: Dict[str, List[float]]
    for part in network_parts(arch, height, width):
        if attribution.layers.get(part.name):
            sums.setdefault(part.key, []).append(attribution.parts[part.name])
    return {key: sum(values) / len(values) for key, values in sums.items()}


def make_profiler(trt: Any) -> Any:
    """A ``trt.IProfiler`` that keeps every reported time per layer (defined lazily: needs tensorrt)."""

    class LayerTimes(trt.IProfiler):  # type: ignore
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times = {}  # type: Dict[str, List[float]]

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.setdefault(layer_name, []).append(float(ms))

    return LayerTimes()


def collect_layer_times(trt: Any, context: Any, run_once: Callable[[], Any], runs: int = 20) -> Dict[str, float]:
    """Median ms per layer over ``runs`` inferences with an IProfiler attached (then detached again:
    profiling synchronises after every layer, which must not slow later timed runs)."""
    profiler = make_profiler(trt)
    context.profiler = profiler
    try:
        for _ in range(runs):
            run_once()
    finally:
        try:
            context.profiler = None
        except TypeError:  # older bindings refuse None; a fresh context is made per runner anyway
            pass
    return {name: median(times) for name, times in profiler.times.items()}
