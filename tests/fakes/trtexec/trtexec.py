"""A stand-in for NVIDIA's trtexec, one release at a time, for machines without an NVIDIA GPU.

What it accepts, prints and exports follows ``facts.py``, where every behaviour cites the NVIDIA
source file and tag it was read from.  It really runs the model: ``--onnx`` "builds" an engine file
(a header with the release and the build flags, then the ONNX model) and inference runs that model
with ONNX Runtime, so ``--exportOutput`` holds real outputs.  Times are simulated and deterministic:
each query takes ``FAKE_TRTEXEC_COMPUTE_MS`` of GPU compute (a comma-separated list is cycled
through, query after query; default 3.0), ``FAKE_TRTEXEC_H2D_MS`` / ``FAKE_TRTEXEC_D2H_MS`` per data
transfer (defaults 0.25 / 0.05) and ``FAKE_TRTEXEC_ENQUEUE_MS`` to enqueue (default 0.1).

Environment:
    FAKE_TRTEXEC_VERSION   the release to behave as: a key of ``facts.TAGS`` (8.2.1 ... 11.0.0)
    FAKE_TRTEXEC_LOG       a file to which each invocation appends ``{"version", "argv"}`` as a JSON line

Run it as ``python tests/fakes/trtexec/trtexec.py ARGS``; ``tests/trtexec_stand_in.py`` writes an
executable ``trtexec`` wrapper per release.
"""

import json
import os
import sys
import time

import facts
import numpy as np

ENGINE_MAGIC = b"FAKE-TRTEXEC-ENGINE\n"
ONNX_TYPES = {"tensor(float)": ("fp32", np.float32), "tensor(float16)": ("fp16", np.float16),
              "tensor(int32)": ("int32", np.int32), "tensor(int64)": ("int64", np.int64),
              "tensor(int8)": ("int8", np.int8), "tensor(bool)": ("bool", np.bool_)}


class Console:
    """trtexec's logger: ``[MM/DD/YYYY-HH:MM:SS] [I] message`` (samples/common/logging.h, all tags)."""

    def __init__(self, test: str, argv: list) -> None:
        self.test = test
        self.command = " ".join(argv)

    def line(self, severity: str, message: str = "") -> None:
        stamp = time.strftime("%m/%d/%Y-%H:%M:%S")
        sys.stdout.write("[{}] [{}] {}\n".format(stamp, severity, message))

    def info(self, message: str = "") -> None:
        self.line("I", message)

    def warning(self, message: str) -> None:
        self.line("W", message)

    def error(self, message: str) -> None:
        self.line("E", message)

    def result(self, word: str) -> None:
        sys.stdout.write("&&&& {} {} # {}\n".format(word, self.test, self.command))

    def fail(self, message: str = "") -> "NoReturn":  # noqa: F821
        if message:
            self.error(message)
        self.result("FAILED")
        sys.stdout.flush()
        sys.exit(1)


def parse_arguments(argv: list) -> dict:
    """argsToArgumentsMap (sampleOptions.cpp): NAME=VALUE or a bare NAME (value "")."""
    arguments = {}
    for arg in argv:
        name, _, value = arg.partition("=")
        arguments[name] = value
    return arguments


def compute_times() -> list:
    text = os.environ.get("FAKE_TRTEXEC_COMPUTE_MS", "3.0")
    return [float(v) for v in text.split(",") if v.strip()]


def env_ms(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def fmt(value: float) -> str:
    """A float as std::ostream writes it by default (6 significant digits)."""
    return "%g" % value


# ------------------------------------------------------------------------------------------- engines
def build(console: Console, version: str, args: dict) -> bytes:
    import onnxruntime

    path = args["--onnx"]
    try:
        with open(path, "rb") as handle:
            model = handle.read()
        onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # the ONNX parser's failure, as trtexec reports it
        console.error("[TRT] ModelImporter: failed to parse {}: {}".format(path, str(exc).splitlines()[0]))
        console.fail("Failed to parse onnx file")
    flags = sorted(name for name in args if name in ("--fp16", "--int8", "--best", "--stronglyTyped", "--noTF32"))
    header = {"version": version, "onnx": os.path.abspath(path), "flags": flags,
              "options": {k: v for k, v in args.items() if k not in ("--onnx", "--saveEngine")}}
    console.info("Engine built in 0.01 sec.")
    return ENGINE_MAGIC + json.dumps(header).encode() + b"\n" + model


def load(console: Console, version: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except OSError as exc:
        console.fail("Error opening engine file: {} ({})".format(path, exc.strerror))
    if not blob.startswith(ENGINE_MAGIC):
        console.fail("Engine deserialization failed: {} is not an engine".format(path))
    header_line, _, _ = blob[len(ENGINE_MAGIC):].partition(b"\n")
    built_by = json.loads(header_line.decode())["version"]
    if built_by != version:
        console.fail("The engine plan file is not compatible with this version of TensorRT, expecting library "
                     "version {} got {}, please rebuild.".format(version, built_by))
    return blob


def engine_model(blob: bytes) -> bytes:
    _, _, rest = blob[len(ENGINE_MAGIC):].partition(b"\n")
    return rest


# ------------------------------------------------------------------------------------------- inference
def binding_lines(console: Console, version: str, tensors: list, loaded: dict) -> None:
    style = facts.binding_style(version)
    for meta, is_input in tensors:
        name = meta.name
        dims = "x".join(str(d) for d in meta.shape)
        type_name = trt_type(version, meta.type)
        if is_input and name in loaded:
            console.info("Using values loaded from {} for input {}".format(loaded[name], name))
        elif is_input or style == "created":
            console.info("Using random values for {} {}".format("input" if is_input else "output", name))
        if style == "created":
            console.info("Created {} binding for {} with dimensions {}".format(
                "input" if is_input else "output", name, dims))
        elif style == "is-created":
            console.info("{} binding for {} with dimensions {} is created.".format(
                "Input" if is_input else "Output", name, dims))
        else:
            console.info("{} binding for {} with dimensions {} and type {} is created.".format(
                "Input" if is_input else "Output", name, dims, type_name))


def trt_type(version: str, onnx_type: str) -> str:
    name = ONNX_TYPES[onnx_type][0]
    if name == "int64" and facts.key(version) < (10, 0):
        return "int32"
    return name


def run_model(console: Console, version: str, blob: bytes, args: dict) -> tuple:
    import onnxruntime

    session = onnxruntime.InferenceSession(engine_model(blob), providers=["CPUExecutionProvider"])
    loaded = {}
    for item in filter(None, args.get("--loadInputs", "").split(",")):
        name, _, path = item.partition(":")
        loaded[name] = path
    tensors = [(m, True) for m in session.get_inputs()] + [(m, False) for m in session.get_outputs()]
    binding_lines(console, version, tensors, loaded)
    feed = {}
    rng = np.random.RandomState(0)
    for meta in session.get_inputs():
        dtype = ONNX_TYPES[meta.type][1]
        if meta.name in loaded:
            values = np.fromfile(loaded[meta.name], dtype=dtype)
            if values.size != int(np.prod(meta.shape)):
                console.fail("Cannot load input {}: {} holds {} values, the binding has {}".format(
                    meta.name, loaded[meta.name], values.size, int(np.prod(meta.shape))))
            feed[meta.name] = values.reshape(meta.shape)
        else:
            feed[meta.name] = rng.uniform(-1, 1, size=meta.shape).astype(dtype)
    outputs = session.run(None, feed)
    return [(meta, value) for meta, value in zip(session.get_outputs(), outputs)], session


def simulate(warmup_ms: float, iterations: int, duration_ms: float, transfers: bool) -> list:
    """The trace of inferenceLoop (sampleInference.cpp): queries back to back on one stream, counting
    the ones that ended within the warm-up time as extra (``skip``), until ``iterations + skip``
    queries ran and ``duration_ms`` passed."""
    computes = compute_times()
    h2d = env_ms("FAKE_TRTEXEC_H2D_MS", 0.25) if transfers else 0.0
    d2h = env_ms("FAKE_TRTEXEC_D2H_MS", 0.05) if transfers else 0.0
    enqueue = env_ms("FAKE_TRTEXEC_ENQUEUE_MS", 0.1)
    trace = []
    now = 0.0
    skip = 0
    ended = 0.0
    i = 0
    while i < iterations + skip or ended < duration_ms:
        compute = computes[len(trace) % len(computes)]
        query = {"enqStart": now, "enqEnd": now + enqueue, "h2dStart": now + enqueue * 0.1}
        query["h2dEnd"] = query["h2dStart"] + h2d
        query["computeStart"] = query["h2dEnd"]
        query["computeEnd"] = query["computeStart"] + compute
        query["d2hStart"] = query["computeEnd"]
        query["d2hEnd"] = query["d2hStart"] + d2h
        trace.append(query)
        ended = query["d2hEnd"]
        now = ended
        if ended < warmup_ms and ended:
            skip += 1
        i += 1
    return trace


def timing(query: dict) -> dict:
    h2d = query["h2dEnd"] - query["h2dStart"]
    compute = query["computeEnd"] - query["computeStart"]
    d2h = query["d2hEnd"] - query["d2hStart"]
    return {"enq": query["enqEnd"] - query["enqStart"], "h2d": h2d, "compute": compute, "d2h": d2h,
            "latency": h2d + compute + d2h, "e2e": query["d2hEnd"] - query["h2dStart"]}


def percentile_of(values: list, q: float) -> float:
    """findPercentile (sampleReporting.cpp v10.3.0): of the sorted values, leave out the top
    int((1 - q/100) * n) and take the largest of the rest."""
    ordered = sorted(values)
    exclude = int((1 - q / 100.0) * len(ordered))
    return ordered[max(len(ordered) - 1 - exclude, 0)]


def report(console: Console, version: str, trace: list, warmup_ms: float, args: dict) -> None:
    """printPerformanceReport / printProlog / printEpilog (sampleReporting.cpp) and the exports."""
    warmups = next((i for i, q in enumerate(trace) if q["computeStart"] >= warmup_ms), len(trace))
    timed = [timing(q) for q in trace[warmups:]]
    if not timed:
        console.fail("no timed queries")
    bench_ms = trace[-1]["d2hEnd"] - trace[warmups]["h2dStart"]
    console.info("Warmup completed {} queries over {} ms".format(warmups, fmt(warmup_ms)))
    console.info("Timing trace has {} queries over {} s".format(len(timed), fmt(bench_ms / 1000)))
    console.info()
    console.info("=== Performance summary ===")
    console.info("Throughput: {} qps".format(fmt(len(timed) / bench_ms * 1000)))
    metrics = [("Latency", "latency")]
    if facts.end_to_end_line(version):
        metrics.append(("End-to-End Host Latency", "e2e"))
    metrics += [("Enqueue Time", "enq"), ("H2D Latency", "h2d"), ("GPU Compute Time", "compute"),
                ("D2H Latency", "d2h")]
    for label, field in metrics:
        values = [t[field] for t in timed]
        text = "min = {} ms, max = {} ms, mean = {} ms, median = {} ms".format(
            fmt(min(values)), fmt(max(values)), fmt(sum(values) / len(values)), fmt(float(np.median(values))))
        for q in facts.percentiles(version):
            text += ", percentile({}%) = {} ms".format(fmt(q), fmt(percentile_of(values, q)))
        console.info("{}: {}".format(label, text))
    console.info("Total Host Walltime: {} s".format(fmt(bench_ms / 1000)))
    console.info("Total GPU Compute Time: {} s".format(fmt(sum(t["compute"] for t in timed) / 1000)))
    if "--exportTimes" in args:
        export_times(version, trace, warmups, args["--exportTimes"])


def export_times(version: str, trace: list, warmups: int, path: str) -> None:
    """exportJSONTrace (sampleReporting.cpp): warm-ups included up to 8.4, endToEndMs in 8.2 only."""
    queries = trace if facts.trace_has_warmups(version) else trace[warmups:]
    with open(path, "w") as out:
        out.write("[\n")
        sep = "  "
        for q in queries:
            t = timing(q)
            fields = [("startEnqMs", q["enqStart"]), ("endEnqMs", q["enqEnd"]), ("startH2dMs", q["h2dStart"]),
                      ("endH2dMs", q["h2dEnd"]), ("startComputeMs", q["computeStart"]),
                      ("endComputeMs", q["computeEnd"]), ("startD2hMs", q["d2hStart"]), ("endD2hMs", q["d2hEnd"]),
                      ("h2dMs", t["h2d"]), ("computeMs", t["compute"]), ("d2hMs", t["d2h"]),
                      ("latencyMs", t["latency"])]
            if facts.trace_has_end_to_end(version):
                fields.append(("endToEndMs", t["e2e"]))
            out.write(sep + "{ " + ", ".join('"{}" : {}'.format(k, fmt(v)) for k, v in fields) + " }\n")
            sep = ", "
        out.write("]\n")


def export_profile(version: str, session, count: int, path: str) -> None:
    """Profiler::exportJSONProfile (sampleReporting.cpp): a count, then one entry per layer."""
    import onnx

    graph = onnx.load_model_from_string(session._model_bytes).graph if hasattr(session, "_model_bytes") else None
    names = [node.name or node.op_type for node in graph.node] if graph is not None else ["layer"]
    share = 100.0 / len(names)
    computes = compute_times()
    per_query = sum(computes) / len(computes) / len(names)
    with open(path, "w") as out:
        out.write('[\n  { "count" : %d }\n' % count)
        for name in names:
            entry = '"name" : "{}", "timeMs" : {}, "averageMs" : {}'.format(name, fmt(per_query * count),
                                                                           fmt(per_query))
            if facts.profile_has_median(version):
                entry += ', "medianMs" : {}'.format(fmt(per_query))
            out.write(", { " + entry + ', "percentage" : {} }}\n'.format(fmt(share)))
        out.write("]\n")


def export_output(outputs: list, version: str, path: str) -> None:
    """exportJSONOutput (sampleReporting.cpp, same layout at every tag)."""
    with open(path, "w") as out:
        out.write("[\n")
        sep = "  "
        for meta, value in outputs:
            if trt_type(version, meta.type).startswith("int"):
                text = ", ".join(str(int(v)) for v in value.ravel())
            else:
                text = ", ".join(fmt(float(v)) for v in value.ravel())
            out.write('{}{{ "name" : "{}"\n'.format(sep, meta.name))
            sep = ", "
            out.write('  {}"dimensions" : "{}"\n'.format(sep, "x".join(str(d) for d in value.shape)))
            out.write('  {}"values" : [ {} ]\n  }}\n'.format(sep, text))
        out.write("]\n")


# ------------------------------------------------------------------------------------------- main
def main(argv: list) -> int:
    version = os.environ.get("FAKE_TRTEXEC_VERSION", "")
    if version not in facts.TAGS:
        sys.stderr.write("fake trtexec: set FAKE_TRTEXEC_VERSION to one of {}\n".format(", ".join(facts.TAGS)))
        return 3
    log = os.environ.get("FAKE_TRTEXEC_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps({"version": version, "argv": argv[1:]}) + "\n")
    console = Console("TensorRT.trtexec " + facts.banner(version), ["trtexec"] + argv[1:])
    console.result("RUNNING")
    args = parse_arguments(argv[1:])
    if "--help" in args or "-h" in args:
        sys.stdout.write("=== Model Options ===\n  (help text)\n")
        return 0
    unknown = [(name, value) for name, value in args.items() if name not in facts.OPTIONS[version]]
    if unknown:
        for name, value in unknown:
            console.error("Unknown option: {} {}".format(name, value))
        sys.stdout.write("=== Model Options ===\n  (help text)\n")
        console.fail()
    eleven = facts.defaults_11(version)
    if eleven:
        for flag, note in (("--noDataTransfers", "Data transfers are now disabled by default. Use "
                                                 "--includeDataTransfers to re-enable data transfers."),
                           ("--useSpinWait", "Spin wait is now enabled by default. Use --noSpinWait to disable "
                                             "spin wait."),
                           ("--useCudaGraph", "CUDA graph is now enabled by default. Use --noCudaGraph to disable "
                                              "CUDA graph."),
                           ("--separateProfileRun", "Separate profile run is now always enabled. This flag will "
                                                    "be removed in a future release.")):
            if flag in args:
                console.warning("{} is deprecated. {}".format(flag, note))
        transfers = "--includeDataTransfers" in args
    else:
        transfers = "--noDataTransfers" not in args
    if "--buildOnly" in args and "--skipInference" in facts.OPTIONS[version]:
        console.warning("--buildOnly flag has been deprecated by --skipInference flag.")
    console.info("=== Device Information ===")
    console.info("Selected Device: Fake GPU (ONNX Runtime on the CPU)")
    console.info("Compute Capability: 8.7")
    console.info()
    console.info("TensorRT version: {}".format(version))
    if "--onnx" in args:
        blob = build(console, version, args)
        if "--saveEngine" in args:
            with open(args["--saveEngine"], "wb") as handle:
                handle.write(blob)
            console.info("Engine saved to {}".format(args["--saveEngine"]))
        if "--skipInference" in args or "--buildOnly" in args:
            console.result("PASSED")
            return 0
    elif "--loadEngine" in args:
        blob = load(console, version, args["--loadEngine"])
    else:
        console.fail("Model missing or format not supported")
    outputs, session = run_model(console, version, blob, args)
    session._model_bytes = engine_model(blob)
    warmup_ms = float(args.get("--warmUp", "200") or 200)
    iterations = int(args.get("--iterations", "10") or 10)
    duration_ms = float(args.get("--duration", "3") or 3) * 1000
    console.info("Starting inference")
    trace = simulate(warmup_ms, iterations, duration_ms, transfers)
    report(console, version, trace, warmup_ms, args)
    if "--exportProfile" in args:
        export_profile(version, session, len(trace), args["--exportProfile"])
    if "--exportOutput" in args:
        export_output(outputs, version, args["--exportOutput"])
    console.result("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
