"""dfseg-export as a real subprocess: export, weights, summary, one-line errors with exit code 2."""

import subprocess
import sys
from typing import List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from dfseg.arch import PRESETS  # noqa: E402
from dfseg.cli.export import summary_table  # noqa: E402
from dfseg.models import count_macs, create_model, list_models  # noqa: E402
from dfseg.models.layers import randomize_batchnorm  # noqa: E402
from dfseg.sizes import Size, parse_size  # noqa: E402
from dfseg.weights import save_weights  # noqa: E402


def _run(args: List[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "dfseg.cli.export"] + args, capture_output=True, text=True, timeout=300
    )


def test_export_classmap_with_weights(tmp_path) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("df1-seg"), seed=2)
    weights = save_weights(model, str(tmp_path / "w.safetensors"))
    out = tmp_path / "m.onnx"
    result = _run(["df1-seg", "--size", "96x64", "-o", str(out), "--output", "classmap", "--weights", weights])
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.RandomState(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    classmap = session.run(["classmap"], {"input": x})[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    assert classmap.dtype == np.int32 and classmap.shape == (1, 64, 96)
    # The loaded weights were used: the class map follows the saved model's logits.
    assert (classmap == logits.argmax(1)).mean() > 0.99


def test_summary_lists_every_model_with_its_macs() -> None:
    result = _run(["--summary"])
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:] if line and line[0] != "M"}
    assert set(rows) == set(list_models())
    for name, arch in PRESETS.items():
        size = Size(2048, 1024) if arch.is_segmentation else Size(224, 224)
        with torch.device("meta"):
            macs = count_macs(create_model(name), size)
        assert rows[name][3] == "{:.3f}G".format(macs / 1e9)
        assert rows[name][4] == str(size) and rows[name][5] == str(arch.depth)


def test_summary_at_a_chosen_size() -> None:
    table = summary_table(parse_size("720p")).splitlines()
    assert len(table) == 2 + len(list_models()) + 1
    assert all(line.split()[4] == "1280x720" for line in table[2:-1])
    with torch.device("meta"):
        macs = count_macs(create_model("df1-seg"), Size(1280, 720))
    assert [line.split()[3] for line in table if line.startswith("df1-seg ")] == ["{:.3f}G".format(macs / 1e9)]


@pytest.mark.parametrize(
    "args,message",
    [
        (["nosuchnet", "--size", "720p", "-o", "{tmp}/x.onnx"], "unknown model 'nosuchnet'"),
        (["df1", "--size", "720q", "-o", "{tmp}/x.onnx"], "size '720q'"),
        (["df1", "--size", "64x64", "-o", "{tmp}/missing/x.onnx"], "does not exist"),
        (["df1", "--size", "64x64", "-o", "{tmp}/x.onnx", "--output", "probs"], "invalid choice: 'probs'"),
        (["df1", "--size", "64x64", "-o", "{tmp}/x.onnx", "--weights", "{tmp}/none.safetensors"], "weights file not found"),
        (["df1", "-o", "{tmp}/x.onnx"], "--size is required"),
        (["--bundle", "{tmp}/bundle", "nosuchnet"], "nosuchnet"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: List[str], message: str, tmp_path) -> None:
    result = _run([a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfseg-export: error: ") and message in lines[0], result.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".tmp-*"))


def test_an_architecture_file_with_a_quoted_number_is_one_line_naming_file_and_field(tmp_path) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text('{"stages": [[64], [128], [256]], "decoder": [19, 32, 32], "classes": "19"}')
    result = _run([str(arch), "--size", "64x48", "-o", str(tmp_path / "m.onnx")])
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "dfseg-export: error: {}: classes: expected an integer, got the string '19'; write the number without "
        "quotes".format(arch)], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json"]


def test_help_explains_video_order() -> None:
    result = _run(["--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "video order" in text and "640x360" in text and "1024x2048" in text and "height x width" in text
