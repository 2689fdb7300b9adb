"""The reference workload that cancels slow drift (``dfseg.bench.protocol``): a fixed network timed beside
every subject, so that latencies are also known as multiples of its time.

It is five 3x3 convolutions with ReLU, 64 -> 128 -> 128 -> 256 -> 512 -> 512 channels from 56x56 down to
7x7 (about 400 MMAC and 16 MB of weights, a few ms on one CPU core): the layers the networks are made
of, with weights too large for a core's own cache, so that a neighbour who fills the shared cache or
the memory bus slows it as it slows the networks.  A smaller reference (a few convolutions on 32x32,
weights in the core's cache) was tried first; it did not see that pressure and over-corrected by up to
6%.  Its weights are fixed (seeded), and ``REFERENCE_ID`` names the definition: tables and
validations compare their ratios only when both used the same one.

Device side: Python 3.6, no torch (writing the file needs the onnx package, as on the host).
"""

REFERENCE_NAME = "reference"
REFERENCE_ID = "dfseg.reference/2: conv3x3+relu 64-128/2-128-256/2-512/2-512 on 1x64x56x56, fp32, seed 0"
# (input channels, output channels, stride) of each convolution
_LAYERS = ((64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 512, 2), (512, 512, 1))
_INPUT = (1, 64, 56, 56)


def write_reference_model(path: str) -> None:
    """Write the reference network to ``path`` (atomically)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from ..fileio import write_atomic

    rng = np.random.RandomState(0)
    nodes, weights = [], []
    current = "x"
    side = _INPUT[2]
    for i, (c_in, c_out, stride) in enumerate(_LAYERS):
        weight = "w{}".format(i)
        scale = np.sqrt(2.0 / (c_in * 9))  # keeps activations O(1): no denormals, no overflow
        weights.append(numpy_helper.from_array(
            (rng.standard_normal((c_out, c_in, 3, 3)) * scale).astype(np.float32), weight))
        conv = "c{}".format(i)
        nodes.append(helper.make_node("Conv", [current, weight], [conv], name=conv, kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], strides=[stride, stride]))
        current = "y" if i == len(_LAYERS) - 1 else "r{}".format(i)
        nodes.append(helper.make_node("Relu", [conv], [current], name="relu{}".format(i)))
        side //= stride
    output = [1, _LAYERS[-1][1], side, side]
    graph = helper.make_graph(nodes, "dfseg_reference",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(_INPUT))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by the ONNX Runtime builds of JetPack 4.6
    model.doc_string = REFERENCE_ID
    write_atomic(path, model.SerializeToString())


def reference_times(results) -> list:
    """Every reference time (ms) measured around the subjects of one ``protocol.measure`` call."""
    return [ms for result in results.values() for ms in (result.reference_ms or [])]


def drift_summary(chunk_ms) -> dict:
    """The reference's median over a run's chunks (the speed its ms are given at) and the drift it saw."""
    from .protocol import median

    ordered = sorted(chunk_ms)
    if not ordered:
        return {"id": REFERENCE_ID, "chunks_ms": []}
    center = median(ordered)
    return {"id": REFERENCE_ID, "median_ms": round(center, 5), "chunks_ms": [round(v, 5) for v in chunk_ms],
            "min_ms": round(ordered[0], 5), "max_ms": round(ordered[-1], 5),
            "drift_pct": round(100.0 * (ordered[-1] - ordered[0]) / center, 3)}
