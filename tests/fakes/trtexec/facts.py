"""What each trtexec release accepts, prints and exports, as NVIDIA's source says: the table that drives
the stand-in ``trtexec.py`` beside this file.  Every fact names the file and tag of NVIDIA/TensorRT it
comes from (``git show TAG:PATH`` in a mirror of github.com/NVIDIA/TensorRT).

Releases (key: the version the banner reports; tag: the source it was read from):

=========  =======  ====================================================================================
version    tag      why it is here
=========  =======  ====================================================================================
8.2.1      8.2.1    JetPack 4.6.x (Python 3.6 floor of the device side)
8.4.3      8.4.3    JetPack 5.0.2 ships 8.4.1; 8.4.1 and 8.4.3 parse and export alike
8.5.2      8.5.2    JetPack 5.1.x
8.6.1      v8.6.1   JetPack 6.0 ships 8.6.2
10.3.0     v10.3.0  JetPack 6.1 / 6.2
10.16.0    v10.16   the newest 10.x
11.0.0     v11.0    the first 11.x
=========  =======  ====================================================================================

Facts and where they come from:

* ``OPTIONS``: the options each release accepts, derived by ``derive.py`` from the
  ``*Options::parse(Arguments&)`` functions of ``samples/common/sampleOptions.cpp`` at each tag.
  Anything else is refused by ``main`` in ``samples/trtexec/trtexec.cpp`` (all tags): one
  ``Unknown option: NAME VALUE`` error line per leftover argument, the help text, then
  ``reportFail`` -- the ``&&&& FAILED`` line and EXIT_FAILURE (``samples/common/logging.h``).
  Among them: ``--buildOnly`` exists up to 8.6 (an alias of ``--skipInference`` there, with a
  deprecation warning: v8.6.1 ``BuildOptions::parse``); ``--skipInference`` from 8.6; ``--workspace``
  up to 8.6, ``--memPoolSize`` from 8.4; ``--stronglyTyped`` from 10.x; ``--fp16``, ``--int8``,
  ``--best``, ``--precisionConstraints`` and ``--layerPrecisions`` are gone in 11.0;
  ``--includeDataTransfers``, ``--noSpinWait`` and ``--noCudaGraph`` are new in 11.0.
* ``BANNER``: ``TestAtom`` name ``TensorRT.trtexec [TensorRT vN]`` with N = ``NV_TENSORRT_VERSION``
  (``samples/common/logging.h`` ``defineTest``); 8.x: major*1000 + minor*100 + patch
  (``include/NvInferRuntimeCommon.h`` 8.2.1), 10.x/11.x: major*10000 + minor*100 + patch
  (``include/NvInferRuntimeBase.h`` v10.3.0); v10.16 and v11.0 append `` [bBUILD]``
  (``logging.h``; build numbers from ``include/NvInferVersion.h``).  The banner is printed before
  the options are parsed, so ``--help`` shows it too (``main``, trtexec.cpp, all tags); ``--help``
  exits with EXIT_SUCCESS and no PASSED line (8.2.1 ``main``).
* ``BINDING``: the line printed for each I/O tensor before inference (``samples/common/
  sampleInference.cpp``, ``FillBindingClosure``/``fillOneBinding``): 8.2.1-8.5.2
  ``Created input binding for NAME with dimensions DIMS`` (lower-case kind), also a
  ``Using random values for output NAME`` line; v8.6.1 and v10.3.0 ``Input binding for NAME with
  dimensions DIMS is created.``; v10.16 and v11.0 ``... with dimensions DIMS and type TYPE is
  created.`` with TYPE as ``operator<<(std::ostream&, nvinfer1::DataType)`` writes it
  (``sampleOptions.cpp`` v10.16: fp32, fp16, int8, int32, ...).  DIMS: ``1x3x4x4``
  (``operator<<(Dims)``, ``sampleOptions.h``).
* ``TRACE_HAS_WARMUPS`` / ``TRACE_HAS_END_TO_END``: ``exportJSONTrace`` in
  ``samples/common/sampleReporting.cpp``: 8.2.1 and 8.4.x write every query, warm-up ones
  included; from 8.5.1 it takes ``nbWarmups`` and skips them.  ``endToEndMs`` is written by 8.2.1
  only.  Warm-up queries are those before the first whose ``computeStart >= warmUp ms``
  (``printPerformanceReport``, all tags); the loop runs ``iterations`` queries after the ones that
  ended within the warm-up time (``inferenceLoop``, ``sampleInference.cpp``).
* ``PROFILE_HAS_MEDIAN``: ``Profiler::exportJSONProfile`` (``sampleReporting.cpp``) writes
  ``medianMs`` from 8.4.1 on.
* ``PERCENTILES`` / ``END_TO_END_LINE``: ``printEpilog`` (``sampleReporting.cpp``) prints one
  ``percentile(99%)`` per metric up to 8.4 (``defaultPercentile{99}``, ``sampleOptions.h``), three
  (90, 95, 99) from 8.5 (``defaultPercentiles``); the ``End-to-End Host Latency`` line only in 8.2.1.
* ``DEFAULTS_11``: v11.0 ``InferenceOptions::parse`` and ``sampleOptions.h``: data transfers off
  (``--includeDataTransfers`` turns them on), spin wait and CUDA graphs on (``--noSpinWait``,
  ``--noCudaGraph``); ``--noDataTransfers``, ``--useSpinWait``, ``--useCudaGraph`` and
  ``--separateProfileRun`` are accepted as deprecated no-ops with a warning.  Earlier releases:
  transfers on (``--noDataTransfers``), spin wait and CUDA graphs off (``--useSpinWait``,
  ``--useCudaGraph``).
* Console lines every release prints (``samples/trtexec/trtexec.cpp`` and ``sampleReporting.cpp``
  ``printProlog``, all tags): ``Selected Device:``, ``TensorRT version: M.m.p``, ``Starting inference``,
  ``Warmup completed N queries over W ms``, ``Timing trace has N queries over S s``,
  ``=== Performance summary ===``, and ``&&&& PASSED`` / ``&&&& FAILED`` at the end.
* ``--exportOutput``: ``exportJSONOutput`` (``sampleReporting.cpp``, same layout at every tag):
  ``[`` then per output ``{ "name" : "N"`` / ``, "dimensions" : "1x3x4x4"`` /
  ``, "values" : [ v, v ]`` / ``}``, values as the binding's type prints them.

Not from NVIDIA's source (the stand-in's own, kept as plain as possible): the engine file (a header
naming the release and the build flags, then the ONNX model, which ONNX Runtime runs so outputs are
real), the simulated per-query times (``FAKE_TRTEXEC_COMPUTE_MS`` and friends), the error text for
an engine of another release, and ``int64`` ONNX tensors shown as ``int32`` by 8.x (TensorRT 8 has
no INT64 type).
"""

TAGS = {"8.2.1": "8.2.1", "8.4.3": "8.4.3", "8.5.2": "8.5.2", "8.6.1": "v8.6.1", "10.3.0": "v10.3.0",
        "10.16.0": "v10.16", "11.0.0": "v11.0"}
# NV_TENSORRT_BUILD where the banner shows it (include/NvInferVersion.h at v10.16 and v11.0)
BANNER_BUILD = {"10.16.0": 72, "11.0.0": 114}

OPTIONS = {  # generated by derive.py (see its docstring for the rule)
    "8.2.1": frozenset([
        "--allowGPUFallback", "--avgRuns", "--avgTiming", "--batch", "--best", "--buildOnly", "--calib",
        "--consistency", "--deploy", "--device", "--directIO", "--dumpLayerInfo", "--dumpOutput", "--dumpProfile",
        "--dumpRefit", "--duration", "--explicitBatch", "--explicitPrecision", "--exportLayerInfo", "--exportOutput",
        "--exportProfile", "--exportTimes", "--exposeDMA", "--fp16", "--help", "--idleTime", "--inputIOFormats",
        "--int8", "--iterations", "--loadEngine", "--loadInputs", "--maxBatch", "--maxShapes", "--maxShapesCalib",
        "--minShapes", "--minShapesCalib", "--minTiming", "--model", "--noBuilderCache", "--noDataTransfers",
        "--noTF32", "--nvtxMode", "--onnx", "--optShapes", "--optShapesCalib", "--output", "--outputIOFormats",
        "--percentile", "--plugins", "--precisionConstraints", "--profilingVerbosity", "--refit", "--restricted",
        "--safe", "--saveEngine", "--separateProfileRun", "--shapes", "--sleepTime", "--sparsity", "--streams",
        "--tacticSources", "--threads", "--timeDeserialize", "--timeRefit", "--timingCacheFile", "--uff",
        "--uffInput", "--uffNHWC", "--useCudaGraph", "--useDLACore", "--useManagedMemory", "--useSpinWait",
        "--verbose", "--warmUp", "--workspace", "-h"
    ]),
    "8.4.3": frozenset([
        "--allowGPUFallback", "--avgRuns", "--avgTiming", "--batch", "--best", "--buildOnly", "--calib",
        "--consistency", "--deploy", "--device", "--directIO", "--dumpLayerInfo", "--dumpOutput", "--dumpProfile",
        "--dumpRefit", "--duration", "--explicitBatch", "--explicitPrecision", "--exportLayerInfo", "--exportOutput",
        "--exportProfile", "--exportTimes", "--exposeDMA", "--fp16", "--help", "--idleTime", "--inputIOFormats",
        "--int8", "--iterations", "--layerOutputTypes", "--layerPrecisions", "--loadEngine", "--loadInputs",
        "--maxBatch", "--maxShapes", "--maxShapesCalib", "--memPoolSize", "--minShapes", "--minShapesCalib",
        "--minTiming", "--model", "--noBuilderCache", "--noDataTransfers", "--noTF32", "--nvtxMode", "--onnx",
        "--optShapes", "--optShapesCalib", "--output", "--outputIOFormats", "--percentile", "--plugins",
        "--precisionConstraints", "--profilingVerbosity", "--refit", "--restricted", "--safe", "--saveEngine",
        "--separateProfileRun", "--shapes", "--sleepTime", "--sparsity", "--streams", "--tacticSources", "--threads",
        "--timeDeserialize", "--timeRefit", "--timingCacheFile", "--uff", "--uffInput", "--uffNHWC", "--useCudaGraph",
        "--useDLACore", "--useManagedMemory", "--useSpinWait", "--verbose", "--warmUp", "--workspace", "-h"
    ]),
    "8.5.2": frozenset([
        "--allowGPUFallback", "--avgRuns", "--avgTiming", "--batch", "--best", "--buildOnly", "--calib",
        "--consistency", "--deploy", "--device", "--directIO", "--dumpLayerInfo", "--dumpOutput", "--dumpProfile",
        "--dumpRefit", "--duration", "--explicitBatch", "--explicitPrecision", "--exportLayerInfo", "--exportOutput",
        "--exportProfile", "--exportTimes", "--exposeDMA", "--fp16", "--help", "--heuristic", "--idleTime",
        "--inputIOFormats", "--int8", "--iterations", "--layerOutputTypes", "--layerPrecisions", "--loadEngine",
        "--loadInputs", "--maxBatch", "--maxShapes", "--maxShapesCalib", "--memPoolSize", "--minShapes",
        "--minShapesCalib", "--minTiming", "--model", "--noBuilderCache", "--noDataTransfers", "--noTF32",
        "--nvtxMode", "--onnx", "--optShapes", "--optShapesCalib", "--output", "--outputIOFormats", "--percentile",
        "--persistentCacheRatio", "--plugins", "--precisionConstraints", "--preview", "--profilingVerbosity",
        "--refit", "--restricted", "--safe", "--saveEngine", "--separateProfileRun", "--shapes", "--sleepTime",
        "--sparsity", "--streams", "--tacticSources", "--threads", "--timeDeserialize", "--timeRefit",
        "--timingCacheFile", "--uff", "--uffInput", "--uffNHWC", "--useCudaGraph", "--useDLACore",
        "--useManagedMemory", "--useSpinWait", "--verbose", "--warmUp", "--workspace", "-h"
    ]),
    "8.6.1": frozenset([
        "--allowGPUFallback", "--avgRuns", "--avgTiming", "--batch", "--best", "--buildDLAStandalone", "--buildOnly",
        "--builderOptimizationLevel", "--calib", "--consistency", "--deploy", "--device", "--directIO",
        "--dumpLayerInfo", "--dumpOutput", "--dumpProfile", "--dumpRawBindingsToFile", "--dumpRefit", "--duration",
        "--dynamicPlugins", "--excludeLeanRuntime", "--explicitBatch", "--explicitPrecision", "--exportLayerInfo",
        "--exportOutput", "--exportProfile", "--exportTimes", "--exposeDMA", "--fp16", "--fp8",
        "--hardwareCompatibilityLevel", "--help", "--heuristic", "--idleTime", "--ignoreParsedPluginLibs",
        "--infStreams", "--inputIOFormats", "--int8", "--iterations", "--layerDeviceTypes", "--layerOutputTypes",
        "--layerPrecisions", "--leanDLLPath", "--loadEngine", "--loadInputs", "--maxAuxStreams", "--maxBatch",
        "--maxShapes", "--maxShapesCalib", "--memPoolSize", "--minShapes", "--minShapesCalib", "--minTiming",
        "--model", "--noBuilderCache", "--noDataTransfers", "--noTF32", "--nvtxMode", "--onnx", "--optShapes",
        "--optShapesCalib", "--output", "--outputIOFormats", "--percentile", "--persistentCacheRatio", "--plugins",
        "--precisionConstraints", "--preview", "--profilingVerbosity", "--refit", "--restricted", "--safe",
        "--saveEngine", "--separateProfileRun", "--setPluginsToSerialize", "--shapes", "--skipInference",
        "--sleepTime", "--sparsity", "--staticPlugins", "--streams", "--tacticSources", "--tempdir",
        "--tempfileControls", "--threads", "--timeDeserialize", "--timeRefit", "--timingCacheFile", "--uff",
        "--uffInput", "--uffNHWC", "--useCudaGraph", "--useDLACore", "--useManagedMemory", "--useRuntime",
        "--useSpinWait", "--vc", "--verbose", "--versionCompatible", "--warmUp", "--workspace", "-h"
    ]),
    "10.3.0": frozenset([
        "--allocationStrategy", "--allowGPUFallback", "--allowWeightStreaming", "--avgRuns", "--avgTiming", "--best",
        "--bf16", "--buildDLAStandalone", "--builderOptimizationLevel", "--calib", "--calibProfile", "--consistency",
        "--device", "--directIO", "--dumpLayerInfo", "--dumpOptimizationProfile", "--dumpOutput", "--dumpProfile",
        "--dumpRawBindingsToFile", "--dumpRefit", "--duration", "--dynamicPlugins", "--errorOnTimingCacheMiss",
        "--excludeLeanRuntime", "--exportLayerInfo", "--exportOutput", "--exportProfile", "--exportTimes",
        "--exposeDMA", "--fp16", "--fp8", "--getPlanVersionOnly", "--hardwareCompatibilityLevel", "--help",
        "--idleTime", "--ignoreParsedPluginLibs", "--infStreams", "--inputIOFormats", "--int4", "--int8",
        "--iterations", "--layerDeviceTypes", "--layerOutputTypes", "--layerPrecisions", "--leanDLLPath",
        "--loadEngine", "--loadInputs", "--markDebug", "--maxAuxStreams", "--maxShapes", "--maxShapesCalib",
        "--memPoolSize", "--minShapes", "--minShapesCalib", "--noBuilderCache", "--noCompilationCache",
        "--noDataTransfers", "--noTF32", "--onnx", "--optShapes", "--optShapesCalib", "--outputIOFormats",
        "--percentile", "--persistentCacheRatio", "--pi", "--pluginInstanceNorm", "--plugins",
        "--precisionConstraints", "--preview", "--profile", "--profilingVerbosity", "--refit", "--restricted",
        "--runtimePlatform", "--safe", "--saveDebugTensors", "--saveEngine", "--separateProfileRun",
        "--setPluginsToSerialize", "--shapes", "--skipInference", "--sleepTime", "--sparsity", "--staticPlugins",
        "--streams", "--stripAllWeights", "--stripWeights", "--stronglyTyped", "--tacticSources", "--tempdir",
        "--tempfileControls", "--threads", "--timeDeserialize", "--timeRefit", "--timingCacheFile", "--useCudaGraph",
        "--useDLACore", "--useManagedMemory", "--useProfile", "--useRuntime", "--useSpinWait", "--vc", "--verbose",
        "--versionCompatible", "--warmUp", "--weightStreamingBudget", "--weightless", "-h"
    ]),
    "10.16.0": frozenset([
        "--adjustForDLA", "--allocationStrategy", "--allowGPUFallback", "--allowWeightStreaming", "--asyncFileReader",
        "--avgRuns", "--avgTiming", "--best", "--bf16", "--buildDLAStandalone", "--builderOptimizationLevel",
        "--calib", "--calibProfile", "--consistency", "--cpuOnly", "--decomposableAttentions", "--device",
        "--directIO", "--distributiveIndependence", "--dumpKernelText", "--dumpLayerInfo",
        "--dumpOptimizationProfile", "--dumpOutput", "--dumpProfile", "--dumpRawBindingsToFile", "--dumpRefit",
        "--duration", "--dynamicPlugins", "--enablePluginOverride", "--errorOnTimingCacheMiss",
        "--excludeLeanRuntime", "--exportLayerInfo", "--exportOutput", "--exportProfile", "--exportTimes",
        "--exposeDMA", "--fp16", "--fp8", "--getPlanVersionOnly", "--hardwareCompatibilityLevel", "--help",
        "--idleTime", "--ignoreParsedPluginLibs", "--infStreams", "--inputIOFormats", "--int4", "--int8",
        "--iterations", "--l2LimitForTiling", "--layerDeviceTypes", "--layerOutputTypes", "--layerPrecisions",
        "--leanDLLPath", "--loadEngine", "--loadInputs", "--markDebug", "--markUnfusedTensorsAsDebugTensors",
        "--maxAuxStreams", "--maxShapes", "--maxShapesCalib", "--maxTactics", "--memPoolSize", "--minShapes",
        "--minShapesCalib", "--monitorMemory", "--noBuilderCache", "--noCompilationCache", "--noDataTransfers",
        "--noTF32", "--onnx", "--optShapes", "--optShapesCalib", "--outputIOFormats", "--percentile",
        "--persistentCacheRatio", "--pi", "--pluginInstanceNorm", "--plugins", "--precisionConstraints", "--preview",
        "--profile", "--profilingVerbosity", "--refit", "--refitFromOnnx", "--remoteAutoTuningConfig",
        "--reportCapabilityDLA", "--restricted", "--runtimePlatform", "--safe", "--safetyPlugins",
        "--saveAllDebugTensors", "--saveDebugTensors", "--saveEngine", "--separateProfileRun",
        "--setPluginsToSerialize", "--shapes", "--skipInference", "--sleepTime", "--sparsity", "--staticPlugins",
        "--streams", "--stripAllWeights", "--stripWeights", "--stronglyTyped", "--tacticSources", "--tempdir",
        "--tempfileControls", "--threads", "--tilingOptimizationLevel", "--timeDeserialize", "--timeRefit",
        "--timingCacheFile", "--uint8AsymmetricQuantizationDLA", "--useCudaGraph", "--useDLACore",
        "--useManagedMemory", "--useProfile", "--useRuntime", "--useSpinWait", "--vc", "--verbose",
        "--versionCompatible", "--warmUp", "--weightStreamingBudget", "--weightless", "-h"
    ]),
    "11.0.0": frozenset([
        "--adjustForDLA", "--allocationStrategy", "--allowGPUFallback", "--allowWeightStreaming", "--asyncFileReader",
        "--avgRuns", "--avgTiming", "--buildDLAStandalone", "--builderOptimizationLevel", "--consistency",
        "--cpuOnly", "--decomposableAttentions", "--device", "--directIO", "--distributiveIndependence",
        "--dumpKernelText", "--dumpLayerInfo", "--dumpOptimizationProfile", "--dumpOutput", "--dumpProfile",
        "--dumpRawBindingsToFile", "--dumpRefit", "--duration", "--dynamicPlugins", "--enablePluginOverride",
        "--errorOnTimingCacheMiss", "--excludeLeanRuntime", "--exportLayerInfo", "--exportOutput", "--exportProfile",
        "--exportTimes", "--exposeDMA", "--getPlanVersionOnly", "--hardwareCompatibilityLevel", "--help",
        "--idleTime", "--ignoreParsedPluginLibs", "--includeDataTransfers", "--infStreams", "--inputIOFormats",
        "--iterations", "--l2LimitForTiling", "--layerDeviceTypes", "--leanDLLPath", "--loadEngine", "--loadInputs",
        "--markDebug", "--markUnfusedTensorsAsDebugTensors", "--maxAuxStreams", "--maxShapes", "--maxTactics",
        "--memPoolSize", "--minShapes", "--monitorMemory", "--noBuilderCache", "--noCompilationCache",
        "--noCudaGraph", "--noDataTransfers", "--noSpinWait", "--noTF32", "--onnx", "--optShapes",
        "--outputIOFormats", "--percentile", "--persistentCacheRatio", "--pi", "--pluginInstanceNorm", "--plugins",
        "--preview", "--profile", "--profilingVerbosity", "--refit", "--refitFromOnnx", "--remoteAutoTuningConfig",
        "--reportCapabilityDLA", "--runtimePlatform", "--safe", "--safetyPlugins", "--saveAllDebugTensors",
        "--saveDebugTensors", "--saveEngine", "--separateProfileRun", "--setPluginsToSerialize", "--shapes",
        "--skipInference", "--sleepTime", "--sparsity", "--staticPlugins", "--streams", "--stripAllWeights",
        "--stripWeights", "--stronglyTyped", "--tacticSources", "--tempdir", "--tempfileControls", "--threads",
        "--tilingOptimizationLevel", "--timeDeserialize", "--timeRefit", "--timingCacheFile",
        "--uint8AsymmetricQuantizationDLA", "--useCudaGraph", "--useDLACore", "--useManagedMemory", "--useProfile",
        "--useRuntime", "--useSpinWait", "--vc", "--verbose", "--versionCompatible", "--warmUp",
        "--weightStreamingBudget", "-h"
    ]),
}


def key(version: str) -> tuple:
    return tuple(int(part) for part in version.split("."))


def banner(version: str) -> str:
    major, minor, patch = key(version)
    number = major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch
    build = BANNER_BUILD.get(version)
    return "[TensorRT v{}]".format(number) + (" [b{}]".format(build) if build is not None else "")


def binding_style(version: str) -> str:
    """'created' (8.2-8.5), 'is-created' (8.6, 10.3), 'typed' (10.16, 11.0)."""
    if key(version) < (8, 6):
        return "created"
    return "is-created" if key(version) < (10, 16) else "typed"


def trace_has_warmups(version: str) -> bool:
    return key(version) < (8, 5)


def trace_has_end_to_end(version: str) -> bool:
    return key(version) < (8, 4)


def profile_has_median(version: str) -> bool:
    return key(version) >= (8, 4)


def percentiles(version: str) -> list:
    return [99.0] if key(version) < (8, 5) else [90.0, 95.0, 99.0]


def end_to_end_line(version: str) -> bool:
    return key(version) < (8, 4)


def defaults_11(version: str) -> bool:
    return key(version) >= (11, 0)
