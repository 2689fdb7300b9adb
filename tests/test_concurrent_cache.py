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
