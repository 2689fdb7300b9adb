"""The TensorRT fake in ``tests/fakes`` has, at each version, exactly the names dfseg touches that NVIDIA's
bindings at that tag register (python/src/infer/*.cpp and python/src/parsers/pyOnnx.cpp: ``"name"``
strings; an enum member as ``.value("NAME", Enum::``), and ``nptype`` behaves as that tag's
python/packaging .../tensorrt/__init__.py.  Read from the NVIDIA/TensorRT git mirror; skipped where
there is none.  Like the contract test, a name is checked, not the class that holds it.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MIRROR = os.environ.get("DFSEG_TENSORRT_MIRROR", "/work/.mirror/NVIDIA+TensorRT/repo")
# Fake version -> the NVIDIA tag whose bindings it follows (8.6.2, JetPack 6.0's, has no tag: 8.6.1's API).
TAGS = {"8.2.1.8": "8.2.1", "8.4.1.5": "8.4.1", "8.5.2.2": "8.5.2", "8.5.3.1": "8.5.3", "8.6.2.3": "v8.6.1",
        "10.3.0.30": "v10.3.0", "10.16.1.11": "v10.16", "11.0.0.114": "v11.0"}
# (where on the fake module, name)
NAMES = [
    ("", "MemoryPoolType"), ("", "TensorIOMode"), ("", "IInt8EntropyCalibrator2"), ("", "IProfiler"),
    ("BuilderFlag", "FP16"), ("BuilderFlag", "INT8"), ("BuilderFlag", "TF32"), ("BuilderFlag", "STRICT_TYPES"),
    ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"), ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
    ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"), ("ProfilingVerbosity", "DETAILED"),
    ("ProfilingVerbosity", "VERBOSE"), ("DataType", "UINT8"), ("DataType", "INT64"),
    ("Builder", "platform_has_fast_fp16"), ("Builder", "platform_has_fast_int8"), ("Builder", "platform_has_tf32"),
    ("Builder", "build_engine"), ("Builder", "build_serialized_network"), ("Builder", "create_network"),
    ("IBuilderConfig", "max_workspace_size"), ("IBuilderConfig", "set_memory_pool_limit"),
    ("IBuilderConfig", "int8_calibrator"), ("IBuilderConfig", "profiling_verbosity"),
    ("IBuilderConfig", "create_timing_cache"), ("IBuilderConfig", "set_flag"), ("IBuilderConfig", "clear_flag"),
    ("ICudaEngine", "num_bindings"), ("ICudaEngine", "get_binding_name"), ("ICudaEngine", "binding_is_input"),
    ("ICudaEngine", "get_binding_shape"), ("ICudaEngine", "get_binding_dtype"), ("ICudaEngine", "get_binding_index"),
    ("ICudaEngine", "num_io_tensors"), ("ICudaEngine", "get_tensor_name"), ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_shape"), ("ICudaEngine", "get_tensor_dtype"),
    ("IExecutionContext", "execute_async_v2"), ("IExecutionContext", "execute_async_v3"),
    ("IExecutionContext", "set_tensor_address"), ("IExecutionContext", "get_tensor_address"),
    ("IExecutionContext", "profiler"), ("ILayer", "precision"), ("ILayer", "set_output_type"),
    ("INetworkDefinition", "has_implicit_batch_dimension"), ("Runtime", "deserialize_cuda_engine"),
    ("OnnxParser", "num_errors"), ("OnnxParser", "get_error"),
]
ENUMS = {"BuilderFlag", "NetworkDefinitionCreationFlag", "ProfilingVerbosity", "DataType"}
LIST_FAKE = """
import json, sys, tensorrt
names = json.loads(sys.argv[1])
has = {}
for owner, name in names:
    holder = getattr(tensorrt, owner, None) if owner else tensorrt
    key = (owner + "." if owner else "") + name
    has[key] = holder is not None and (name in getattr(holder, "__members__", {}) or hasattr(holder, name))
try:
    tensorrt.nptype(tensorrt.float32)
    has["nptype works with numpy 1.24"] = True
except AttributeError:
    has["nptype works with numpy 1.24"] = False
print(json.dumps(has))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", MIRROR] + list(args), capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def mirror():
    if not os.path.isdir(MIRROR):
        pytest.skip("no NVIDIA/TensorRT mirror at {} (set DFSEG_TENSORRT_MIRROR)".format(MIRROR))
    return MIRROR


def nvidia_has(tag: str) -> dict:
    files = [f for f in git("ls-tree", "-r", "--name-only", tag, "python/src").split()
             if f.endswith(".cpp") and ("/infer/" in f or f.endswith("pyOnnx.cpp"))]
    source = "".join(git("show", "{}:{}".format(tag, f)) for f in files)
    has = {}
    for owner, name in NAMES:
        key = (owner + "." if owner else "") + name
        if owner in ENUMS:  # a member of that enum, not any string of that name (Severity.VERBOSE)
            has[key] = '.value("{}", {}::'.format(name, owner) in source
        else:
            has[key] = '"{}"'.format(name) in source
    init = next(path for path in ("python/packaging/bindings_wheel/tensorrt/__init__.py",
                                  "python/packaging/tensorrt/__init__.py")
                if path in git("ls-tree", "-r", "--name-only", tag, "python/packaging"))
    has["nptype works with numpy 1.24"] = "np.bool," not in git("show", "{}:{}".format(tag, init))
    return has


@pytest.mark.parametrize("version", sorted(TAGS))
def test_the_fake_has_what_each_tag_binds(version, mirror):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
    env.update(FAKE_TENSORRT_VERSION=version, FAKE_NUMPY_VERSION="1.24.4", PYTHONPATH=os.path.join(HERE, "fakes"))
    done = subprocess.run([sys.executable, "-c", LIST_FAKE, json.dumps(NAMES)], env=env, capture_output=True,
                          text=True, check=True)
    fake = json.loads(done.stdout)
    nvidia = nvidia_has(TAGS[version])
    wrong = {key: {"fake": fake[key], "nvidia " + TAGS[version]: nvidia[key]} for key in nvidia
             if fake[key] != nvidia[key]}
    assert not wrong, wrong


def test_the_fake_pycuda_refuses_what_a_real_driver_refused(tmp_path):
    """The stand-in pycuda against a real driver: tests/data/cuda/probe_pycuda_threads.py ran on an NVIDIA
    H200 (driver 580, CUDA 13.0, pycuda 2026.1) and recorded which calls a thread with no current context
    may make while another thread holds the context (pycuda_driver580_no_context.json).  The fake with
    FAKE_CUDA_DRIVER_VERSION=13000 gives the same outcome and message for each; older drivers
    (JetPack's CUDA 10.2 to 12.6) are modelled stricter, refusing stream-ordered calls too (unmeasured)."""
    data = os.path.join(HERE, "data", "cuda")
    with open(os.path.join(data, "pycuda_driver580_no_context.json")) as handle:
        real = json.load(handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "fakes"), FAKE_CUDA_DRIVER_VERSION="13000",
               OUT=str(tmp_path))
    done = subprocess.run([sys.executable, os.path.join(data, "probe_pycuda_threads.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fake = json.loads(done.stdout)
    real.pop("driver"), fake.pop("driver")
    assert fake == real
