"""Two real processes deriving the same graph into one cache while a third reads it: each writer gets
a whole file (atomic rename of a complete file), the reader never sees a torn one, nothing is left over."""

import os
import subprocess
import sys

from test_live_pipeline import tiny_onnx

DERIVE = """
import sys
from dfseg.build_config import BuildConfig
from dfseg.precision import graph_for
path = graph_for(sys.argv[1], BuildConfig(precision="fp16", cache_dir=sys.argv[2]), "onnxruntime")
print(path)
"""

READ = """
import os, sys, time
import onnx
cache, deadline, seen = sys.argv[1], time.time() + 120, 0
folder = os.path.join(cache, "graphs")
while time.time() < deadline and not os.path.exists(sys.argv[2]):
    for name in (os.listdir(folder) if os.path.isdir(folder) else []):
        if name.endswith(".onnx") and not name.startswith(".tmp-"):
            onnx.checker.check_model(onnx.load(os.path.join(folder, name)))  # a torn file fails here
            seen += 1
print(seen)
"""


def test_two_writers_and_a_reader_on_one_graph_cache(tmp_path):
    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    cache = str(tmp_path / "cache")
    done = str(tmp_path / "done")
    reader = subprocess.Popen([sys.executable, "-c", READ, cache, done], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", DERIVE, model, cache], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    paths = []
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        paths.append(out.strip())
    open(done, "w").close()
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err  # every file the reader saw was a whole, valid graph
    assert paths[0] == paths[1] and os.path.isfile(paths[0])
    import onnx

    onnx.checker.check_model(onnx.load(paths[0]))
    assert os.listdir(os.path.dirname(paths[0])) == [os.path.basename(paths[0])]  # no temporary file left


BUILD_ENGINE = """
import sys
import numpy as np
from dfseg.backends import get_runner
from dfseg.build_config import BuildConfig
model, cache = sys.argv[1], sys.argv[2]
with get_runner("onnxruntime", model) as reference:
    feed = reference.make_feed(seed=3)
    expected = reference.infer(feed)
runner = get_runner("tensorrt", model, config=BuildConfig(cache_dir=cache))
runner.activate()
outputs = runner.infer(feed)
runner.deactivate()
for name, value in expected.items():
    np.testing.assert_array_equal(outputs[name], value)  # a whole engine: it runs and gives the model's outputs
print("ok")
"""


def test_two_processes_build_one_tensorrt_engine_into_one_cache(tmp_path):
    """With the TensorRT fake of tests/fakes (a real build path: parse, build, serialise, cache, load), two
    processes miss the cache together and both build: each gets a whole engine, the cache ends with one
    engine, its sidecar and the timing cache, no temporary file; a third process then loads it from the cache."""
    from test_jetpack_matrix import TARGETS, device_run

    model = tiny_onnx(str(tmp_path / "tiny.onnx"))
    cache = str(tmp_path / "engines")
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAKE_")}
    env.update(TARGETS["jetpack-6.2"], PYTHONPATH=os.pathsep.join([os.path.join(os.path.dirname(__file__), "fakes"),
                                                                    os.path.dirname(os.path.dirname(__file__))]))
    code = "import sys; sys.modules['torch'] = None\n" + BUILD_ENGINE
    builders = [subprocess.Popen([sys.executable, "-c", code, model, cache], env=env, cwd=str(tmp_path),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for builder in builders:
        out, err = builder.communicate(timeout=300)
        assert builder.returncode == 0 and out.strip() == "ok", err
    names = sorted(os.listdir(cache))
    engines = [n for n in names if n.endswith(".engine")]
    assert len(engines) == 1 and engines[0] + ".json" in names, names
    assert not [n for n in names if n.startswith(".tmp-")], names
    from dfseg.backends.tensorrt.engines import EngineCache

    (meta,) = EngineCache(cache).entries()
    assert os.path.getsize(os.path.join(cache, engines[0])) == meta["engine_bytes"]
    again = device_run("jetpack-6.2", None, model, cache, cwd=tmp_path, code=BUILD_ENGINE)
    assert again.returncode == 0 and again.stdout.strip() == "ok", again.stderr
    assert "building a TensorRT" not in again.stderr  # the cached engine was used
    assert sorted(os.listdir(cache)) == names
