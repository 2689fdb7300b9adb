"""dfseg-convert: .caffemodel files written through the same runtime protobuf schema from real dfseg
models' random weights (with the release's layer names and BN scale factors), converted back and
compared tensor by tensor, then run: the converted model gives identical outputs."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dfseg.arch import Arch
from dfseg.convert.caffe_schema import CaffeLayer, message_classes, read_caffemodel, write_caffemodel
from dfseg.convert.caffe_to_dfseg import ConversionError, convert_caffemodel
from dfseg.models import create_model
from dfseg.models.layers import bilinear_kernel, randomize_batchnorm

TINY_SEG = "s16.16-16x1_32x1_32x1-wc19.19.32"
TINY_BOTTLENECK = Arch.create([[16, 32], [[16, 64]], [[32, 64], [32, 128]]], block=["basic", "bottleneck", "bottleneck"],
                              stem=[16, 16], classes=10)
BN_FACTOR = 4.0  # a power of two, so mean * factor / factor is exact in float32


def release_layers(model, base=1, deconvs=True, dotted_skip_bn=False):
    """The release's layers for ``model``, named as ../shared/spec/dfnet-architecture.md says."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    layers = [CaffeLayer("data", "Input", [])]

    def conv(caffe, ours, bn_name=None):
        bn_name = bn_name or caffe
        layers.append(CaffeLayer(caffe, "Convolution", [sd[ours + ".conv.weight"]]))
        layers.append(CaffeLayer(bn_name + "/bn", "BatchNorm", [
            sd[ours + ".bn.running_mean"] * BN_FACTOR, sd[ours + ".bn.running_var"] * BN_FACTOR,
            np.array([BN_FACTOR], np.float32)]))
        layers.append(CaffeLayer(bn_name + "/bn_scale", "Scale", [sd[ours + ".bn.weight"], sd[ours + ".bn.bias"]]))
        layers.append(CaffeLayer(bn_name + "/relu", "ReLU", []))

    conv("conv1", "stem.conv1")
    conv("conv2", "stem.conv2")
    for stage in (3, 4, 5):
        j = 0
        while "stage{}.{}.conv1.conv.weight".format(stage, j) in sd:
            release = "res{}.{}".format(stage - 1, j + base)
            ours = "stage{}.{}".format(stage, j)
            for c in ("conv1", "conv2", "conv3"):
                if "{}.{}.conv.weight".format(ours, c) in sd:
                    conv("{}.{}".format(release, c), "{}.{}".format(ours, c))
            if ours + ".shortcut.conv.weight" in sd:
                skip_bn = release + (".skipConv" if dotted_skip_bn else "skipConv")
                conv(release + ".skipConv", ours + ".shortcut", bn_name=skip_bn)
            layers.append(CaffeLayer(release + ".add", "Eltwise", []))
            j += 1
    if "classifier.fc.weight" in sd:
        layers.append(CaffeLayer("pool5", "Pooling", []))
        layers.append(CaffeLayer("fc", "InnerProduct", [sd["classifier.fc.weight"], sd["classifier.fc.bias"]]))
        return layers
    for i in range(4):
        conv("psp.pool{}.conv".format(i + 1), "ppm.branches.{}".format(i))
    conv("psp.concat.conv", "ppm.conv")
    for i in (3, 4, 5):
        conv("Decoder_wc{}".format(i), "wc{}".format(i))
    for release, ours in (("Decoder4_4", "fuse4"), ("Decoder3_3", "fuse3")):
        conv(release + ".proj", ours + ".proj")
        if deconvs:
            channels = sd[ours + ".proj.conv.weight"].shape[0]
            layers.append(CaffeLayer(release + ".proj/up2", "Deconvolution", [bilinear_kernel(channels, 4).numpy()]))
        conv(release + ".conv1", ours + ".conv")
    conv("Decoder_score", "head.conv")
    if deconvs:
        layers.append(CaffeLayer("Decoder_score.up8", "Deconvolution", [bilinear_kernel(19, 16).numpy()]))
    return layers


def random_model(arch, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(create_model(arch), seed=seed).eval()


def assert_same_model(original, converted, size=(1, 3, 64, 96)):
    a, b = original.state_dict(), converted.state_dict()
    for key, value in a.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, b[key]), key
    x = torch.randn(*size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(original(x), converted(x))


def run_convert(*args):
    return subprocess.run([sys.executable, "-m", "dfseg.cli.convert", *args], capture_output=True, text=True, timeout=300)


def test_cli_round_trip_segmentation_model(tmp_path):
    arch = Arch.parse(TINY_SEG)
    original = random_model(arch)
    write_caffemodel(str(tmp_path / "w.caffemodel"), release_layers(original))
    proc = run_convert(TINY_SEG, str(tmp_path / "w.caffemodel"), str(tmp_path / "w.safetensors"), "--list")
    assert proc.returncode == 0, proc.stderr
    assert "Decoder_score/bn" in proc.stdout and "head.conv.bn.running_mean" in proc.stdout
    converted = create_model(arch, pretrained_weights=str(tmp_path / "w.safetensors"))
    assert_same_model(original, converted)


@pytest.mark.parametrize("base, dotted", [(0, False), (1, True)])
def test_round_trip_bottleneck_backbone_with_classifier(tmp_path, base, dotted):
    original = random_model(TINY_BOTTLENECK)
    write_caffemodel(str(tmp_path / "b.caffemodel"), release_layers(original, base=base, dotted_skip_bn=dotted))
    converted, mapped = convert_caffemodel(str(tmp_path / "b.caffemodel"), TINY_BOTTLENECK)
    assert ("fc", "classifier.fc.bias", (10,)) in [tuple(m) for m in mapped]
    assert_same_model(original, converted, size=(1, 3, 64, 64))


@pytest.mark.slow
def test_round_trip_df1_seg_preset(tmp_path):
    arch = Arch.parse("df1-seg")
    original = random_model(arch)
    write_caffemodel(str(tmp_path / "df1.caffemodel"), release_layers(original))
    converted, mapped = convert_caffemodel(str(tmp_path / "df1.caffemodel"), arch)
    assert len(mapped) == sum(1 for k in original.state_dict() if not k.endswith("num_batches_tracked"))
    assert_same_model(original, converted, size=(1, 3, 64, 128))


def test_old_v1_format_is_read(tmp_path):
    net_class = message_classes()[0]
    net = net_class(name="v1")
    layer = net.layers.add(name="conv1", type=4)
    blob = layer.blobs.add(num=2, channels=3, height=1, width=1)
    blob.data.extend([1, 2, 3, 4, 5, 6])
    (tmp_path / "v1.caffemodel").write_bytes(net.SerializeToString())
    (read,) = read_caffemodel(str(tmp_path / "v1.caffemodel"))
    assert read.name == "conv1" and read.type == "V1:4"
    np.testing.assert_array_equal(read.blobs[0], np.arange(1, 7, dtype=np.float32).reshape(2, 3, 1, 1))


def _convert_expecting(tmp_path, layers, arch, message):
    write_caffemodel(str(tmp_path / "bad.caffemodel"), layers)
    with pytest.raises(ConversionError) as info:
        convert_caffemodel(str(tmp_path / "bad.caffemodel"), arch)
    assert message in str(info.value), str(info.value)


def test_every_problem_is_reported_by_layer_name(tmp_path):
    arch = Arch.parse(TINY_SEG)
    layers = release_layers(random_model(arch))
    layers = [layer for layer in layers if layer.name != "Decoder_wc4/bn"]
    layers.append(CaffeLayer("mystery", "Convolution", [np.zeros((4, 4, 1, 1), np.float32)]))
    _convert_expecting(tmp_path, layers, arch, "layer Decoder_wc4/bn is missing")
    _convert_expecting(tmp_path, layers, arch, "has no place for: mystery")
    _convert_expecting(tmp_path, layers, arch, "wc4.bn.running_mean")  # left unfilled, named


def test_shape_mismatch_and_wrong_architecture(tmp_path):
    arch = Arch.parse(TINY_SEG)
    layers = release_layers(random_model(arch))
    layers = [CaffeLayer(x.name, x.type, [np.zeros((16, 3, 5, 5), np.float32)]) if x.name == "conv1" else x for x in layers]
    _convert_expecting(tmp_path, layers, arch, "layer conv1: blob shape [16, 3, 5, 5] but stem.conv1.conv.weight needs [16, 3, 3, 3]")
    wider = Arch.parse(TINY_SEG.replace("wc19.19.32", "wc19.32.32"))
    _convert_expecting(tmp_path, release_layers(random_model(arch)), wider, "Decoder_wc4")


def test_trained_deconvolution_is_refused(tmp_path):
    arch = Arch.parse(TINY_SEG)
    layers = [
        CaffeLayer(x.name, x.type, [x.blobs[0] * 2]) if x.name == "Decoder_score.up8" else x
        for x in release_layers(random_model(arch))
    ]
    _convert_expecting(tmp_path, layers, arch, "Decoder_score.up8 is not the fixed bilinear kernel")


def test_cli_errors_exit_2(tmp_path):
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xff\xff\xff not protobuf")
    proc = run_convert("df1-seg", str(tmp_path / "junk.caffemodel"), str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and "junk.caffemodel" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_convert("df1-seg", str(tmp_path / "none.caffemodel"), str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    arch = Arch.parse(TINY_SEG)
    write_caffemodel(str(tmp_path / "w.caffemodel"), release_layers(random_model(arch)))
    proc = run_convert("df1-seg", str(tmp_path / "w.caffemodel"), str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and "does not fit" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o.safetensors").exists()
