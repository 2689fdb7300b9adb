"""What trtexec prints and exports, per release: its console summary (banner, device, bindings,
performance summary), ``--exportTimes``, ``--exportProfile`` and ``--exportOutput``.  The formats and
where each comes from (NVIDIA's ``samples/common/sampleReporting.cpp`` and ``sampleInference.cpp`` at
each tag) are listed in ``trtexec``'s docstring; ``tests/fakes/trtexec/facts.py`` cites each fact.

Device side: Python 3.6, no torch.
"""

import json
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ...errors import UserError


class MetricSummary(NamedTuple):
    """One metric line of trtexec's performance summary (``GPU Compute Time: min = ...``), in ms."""

    min: float
    max: float
    mean: float
    median: float
    percentiles: Dict[float, float]  # {99.0: ms} (8.2) or {90.0: .., 95.0: .., 99.0: ..} (10.x)


class ConsoleSummary(NamedTuple):
    tensorrt_version: Optional[str]
    passed: bool
    throughput_qps: Optional[float]
    metrics: Dict[str, MetricSummary]  # "Latency", "GPU Compute Time", "H2D Latency", ... as printed
    warmup_queries: Optional[int]
    timed_queries: Optional[int]
    device: Optional[str]
    compute_capability: Optional[str]
    bindings: Dict[str, "Binding"]


class Binding(NamedTuple):
    is_input: bool
    shape: Tuple[int, ...]
    dtype: Optional[str]  # as trtexec names it (fp32, fp16, int32, ...); printed by 10.16 and newer only


class TraceTimes(NamedTuple):
    """Per timed query (warm-up queries removed), in ms."""

    latency_ms: List[float]  # H2D + compute + D2H
    compute_ms: List[float]
    h2d_ms: List[float]
    d2h_ms: List[float]
    enqueue_ms: List[float]
    end_to_end_ms: Optional[List[float]]  # 8.2 only
    warmup_queries: int
    format: str  # "8.2" (with endToEndMs) or "8.4+"


class LayerTime(NamedTuple):
    name: str
    total_ms: float
    average_ms: float
    median_ms: Optional[float]  # 10.x only
    percentage: float


class LayerProfile(NamedTuple):
    iterations: int
    layers: List[LayerTime]
    format: str  # "8.2" or "10"

    def per_layer_ms(self, use_median: bool = True) -> Dict[str, float]:
        """Per-inference time of each layer: the median where the profile has one, else the mean."""
        out = {}  # type: Dict[str, float]
        for layer in self.layers:
            value = layer.median_ms if (use_median and layer.median_ms is not None) else layer.average_ms
            out[layer.name] = out.get(layer.name, 0.0) + value
        return out


_NUMBER = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"
_METRIC_LINE = re.compile(
    r"\]\s*(?P<metric>[A-Za-z][A-Za-z0-9 \-]*?):\s*min = " + _NUMBER + r" ms, max = " + _NUMBER + r" ms, mean = "
    + _NUMBER + r" ms, median = " + _NUMBER + r" ms(?P<rest>.*)$")
_PERCENTILE = re.compile(r"percentile\((\d+(?:\.\d+)?)%\) = " + _NUMBER + r" ms")
# 8.2-8.5: "Created input binding for X with dimensions D"; 8.6, 10.3: "Input binding for X with dimensions D
# is created."; 10.16, 11: "... with dimensions D and type T is created."
_BINDING = re.compile(r"(?:^|\] )(?:Created (?P<old>input|output)|(?P<new>Input|Output)) binding for (?P<name>.+?) with "
                      r"dimensions (?P<dims>-?\d+(?:x-?\d+)*)?(?: and type (?P<type>\w+))?(?: is created\.)?\s*$", re.M)


def version_from_tag(tag: str) -> str:
    """'8201' -> '8.2.1' (8.x: MNPP), '100300' -> '10.3.0' (10.x: MMNNPP), as in the banner."""
    if len(tag) >= 6:
        return "{}.{}.{}".format(int(tag[:-4]), int(tag[-4:-2]), int(tag[-2:]))
    return "{}.{}.{}".format(int(tag[0]), int(tag[1]), int(tag[2:]))


def parse_console(text: str) -> ConsoleSummary:
    """The performance summary, banner and device facts of a trtexec console log (8.2 or 10.x)."""
    version = None  # type: Optional[str]
    match = re.search(r"TensorRT version: (\d+\.\d+\.\d+)", text)
    if match:
        version = match.group(1)
    else:
        tag = re.search(r"\[TensorRT v(\d+)\]", text)
        version = version_from_tag(tag.group(1)) if tag else None
    metrics = {}  # type: Dict[str, MetricSummary]
    summary_at = text.find("=== Performance summary ===")
    for line in (text[summary_at:] if summary_at >= 0 else text).splitlines():
        found = _METRIC_LINE.search(line)
        if not found:
            continue
        percentiles = {float(p): float(v) for p, v in _PERCENTILE.findall(found.group("rest"))}
        metrics[found.group("metric").strip()] = MetricSummary(
            float(found.group(2)), float(found.group(3)), float(found.group(4)), float(found.group(5)), percentiles)
    throughput = re.search(r"Throughput: " + _NUMBER + " qps", text)
    warmup = re.search(r"Warmup completed (\d+) queries", text)
    timed = re.search(r"Timing trace has (\d+) queries", text)
    device = re.search(r"Selected Device: (.+?)\s*$", text, re.M)
    capability = re.search(r"Compute Capability: (\d+\.\d+)", text)
    bindings = {}  # type: Dict[str, Binding]
    for found in _BINDING.finditer(text):
        kind = (found.group("old") or found.group("new")).lower()
        dims = found.group("dims")
        bindings[found.group("name")] = Binding(kind == "input", tuple(int(d) for d in dims.split("x")) if dims else (),
                                                found.group("type"))
    return ConsoleSummary(
        tensorrt_version=version,
        passed="&&&& PASSED TensorRT.trtexec" in text,
        throughput_qps=float(throughput.group(1)) if throughput else None,
        metrics=metrics,
        warmup_queries=int(warmup.group(1)) if warmup else None,
        timed_queries=int(timed.group(1)) if timed else None,
        device=device.group(1) if device else None,
        compute_capability=capability.group(1) if capability else None,
        bindings=bindings,
    )


def _load_json(text_or_path: str, what: str) -> Any:
    text = text_or_path
    source = "<{}>".format(what)
    if not text_or_path.lstrip().startswith(("[", "{")):
        source = text_or_path
        try:
            with open(text_or_path) as handle:
                text = handle.read()
        except OSError as exc:
            raise UserError("{}: cannot read trtexec {} ({})".format(text_or_path, what, exc.strerror)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError("{}: trtexec {} is not valid JSON ({}); was trtexec interrupted?".format(
            source, what, exc)) from None


def trace_has_warmups(version: Tuple[int, int]) -> bool:
    """Whether trtexec ``version``'s ``--exportTimes`` holds the warm-up queries too: 8.2 and 8.4 do;
    from 8.5 ``exportJSONTrace`` skips them (NVIDIA ``samples/common/sampleReporting.cpp``)."""
    return tuple(version) < (8, 5)


def parse_times(text_or_path: str, warmup_ms: float = 0.0, has_warmups: Optional[bool] = None) -> TraceTimes:
    """An ``--exportTimes`` file.  Where it holds the warm-up queries (``has_warmups``; see
    ``trace_has_warmups``), those before the first whose compute started at ``warmup_ms`` or later are
    dropped (trtexec's own rule, ``printPerformanceReport``).  ``has_warmups`` None: only a file with
    ``endToEndMs`` (8.2) is taken to hold them -- an 8.4 file cannot be told from an 8.5 one, so pass it."""
    data = _load_json(text_or_path, "exportTimes")
    if not isinstance(data, list) or not all(isinstance(q, dict) and "computeMs" in q for q in data):
        raise UserError("trtexec exportTimes: expected a list of queries with computeMs, got {}".format(
            type(data).__name__))
    old_format = bool(data) and "endToEndMs" in data[0]
    if has_warmups is None:
        has_warmups = old_format
    queries = list(data)
    if has_warmups:
        first = next((i for i, q in enumerate(data) if float(q.get("startComputeMs", 0.0)) >= warmup_ms), len(data))
        queries = queries[first:]

    def column(field: str) -> List[float]:
        return [float(q[field]) for q in queries]

    return TraceTimes(
        latency_ms=column("latencyMs"),
        compute_ms=column("computeMs"),
        h2d_ms=column("h2dMs"),
        d2h_ms=column("d2hMs"),
        enqueue_ms=[float(q["endEnqMs"]) - float(q["startEnqMs"]) for q in queries],
        end_to_end_ms=column("endToEndMs") if old_format else None,
        warmup_queries=len(data) - len(queries),
        format="8.2" if old_format else "8.4+",
    )


def parse_profile(text_or_path: str) -> LayerProfile:
    """An ``--exportProfile`` file: ``[{"count": N}, {"name": .., "timeMs": .., "averageMs": ..,
    ["medianMs": ..,] "percentage": ..}, ...]``."""
    data = _load_json(text_or_path, "exportProfile")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "count" not in data[0]:
        raise UserError('trtexec exportProfile: expected [{"count": N}, {layer}, ...]')
    layers = []
    has_median = False
    for entry in data[1:]:
        median = entry.get("medianMs")
        has_median = has_median or median is not None
        layers.append(LayerTime(str(entry["name"]), float(entry["timeMs"]), float(entry["averageMs"]),
                                float(median) if median is not None else None, float(entry.get("percentage", 0.0))))
    return LayerProfile(int(data[0]["count"]), layers, "10" if has_median else "8.2")


# trtexec's names of tensor types (``operator<<(std::ostream&, nvinfer1::DataType)``) as numpy types.
TRT_DTYPES = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8, "int32": np.int32, "int64": np.int64,
              "bool": np.bool_, "uint8": np.uint8}


def parse_output(text_or_path: str, dtypes: Optional[Dict[str, np.dtype]] = None) -> Dict[str, np.ndarray]:
    """An ``--exportOutput`` file: ``[{"name": .., "dimensions": "1x19x64x64", "values": [...]}, ...]``;
    each output as ``dtypes[name]`` (float32 where not given)."""
    data = _load_json(text_or_path, "exportOutput")
    outputs = {}
    for entry in data:
        shape = tuple(int(d) for d in str(entry["dimensions"]).split("x") if d)
        dtype = (dtypes or {}).get(str(entry["name"]), np.dtype(np.float32))
        outputs[str(entry["name"])] = np.asarray(entry["values"], dtype=dtype).reshape(shape)
    return outputs
