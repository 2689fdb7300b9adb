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
from dfseg.convert.caffe_to_dfseg import ConversionError, convert_caffemodel, convert_layers
from dfseg.models import create_model
from dfseg.models.layers import bilinear_kernel, randomize_batchnorm
from dfseg.models.registry import build_model

TINY_SEG = "s16.16-16x1_32x1_32x1-wc19.19.32"
# The last block changes only the inner width (128 -> 128): a projection, as DF2A's res4.5 has.
TINY_BOTTLENECK = Arch.create([[16, 32], [[16, 64]], [[32, 64], [32, 128], [64, 128]]],
                              block=["basic", "bottleneck", "bottleneck"], stem=[16, 16], classes=10)
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


# The authors' released networks as their deploy prototxts define them (lixincn2015/Partial-Order-
# Pruning, prototxt/*.prototxt, checked layer by layer), written out as our own data: per release stage
# res2, res3, res4 the blocks, "OUT" (basic: 3x3 OUT, 3x3 OUT) or "INNER:OUT" (bottleneck: 1x1 INNER,
# 3x3 INNER, 1x1 OUT), with "s" where the block has a res{k}.{j}.skipConv projection.
RELEASE_STAGES = {
    "df1": ["64s 64 64", "128s 128 128", "256s 256 256 512s"],
    "df2": ["64s 64 128s", "128s" + " 128" * 9 + " 256s", "256s 256 256 256 512s 512"],
    "df2a": ["64s 64 128s", "128:512s" + " 128:512" * 9 + " 256:1024s",
             "256:1024s 256:1024 256:1024 256:1024 512:1024s 512:1024"],  # res4.5: a 1024 -> 1024 projection
    "dflite": ["64s 64", "128s 128", "256s 512s"],
}
RELEASE_NETS = {  # preset: (backbone, decoder [C3, C4, C5], BN merged into conv biases as in *_mergebn files)
    "df1": ("df1", None, False), "df2": ("df2", None, False), "df2a": ("df2a", None, False),
    "df1-seg": ("df1", (19, 32, 128), False), "df2-seg1": ("df2", (19, 19, 32), False),
    "df2-seg2": ("df2", (19, 256, 512), False), "dflite-seg": ("dflite", (32, 32, 512), True),
}


def release_net(backbone, decoder, merged):
    """Every layer with blobs in the release's caffemodel, with Caffe's blob shapes, from the tables above
    alone (not from our model): conv + X/bn + X/bn_scale (skip BN named res{k}.{j}skipConv/bn), fixed
    bilinear deconvolutions (C, 1, k, k), fc (1000, C) + bias."""
    layers = []

    def conv(name, c_out, c_in, k, bn_name=None):
        weight = np.zeros((c_out, c_in, k, k), np.float32)
        if merged:
            layers.append(CaffeLayer(name, "Convolution", [weight, np.zeros(c_out, np.float32)]))
            return
        layers.append(CaffeLayer(name, "Convolution", [weight]))
        ones = np.ones(c_out, np.float32)
        layers.append(CaffeLayer((bn_name or name) + "/bn", "BatchNorm", [ones * 0, ones, np.ones(1, np.float32)]))
        layers.append(CaffeLayer((bn_name or name) + "/bn_scale", "Scale", [ones, ones * 0]))

    conv("conv1", 32, 3, 3)
    conv("conv2", 64, 32, 3)
    c_in, ends = 64, []
    for k, stage in zip((2, 3, 4), RELEASE_STAGES[backbone]):
        for j, block in enumerate(stage.split(), 1):
            name = "res{}.{}".format(k, j)
            widths = [int(w) for w in block.rstrip("s").split(":")]
            if len(widths) == 1:
                conv(name + ".conv1", widths[0], c_in, 3)
                conv(name + ".conv2", widths[0], widths[0], 3)
            else:
                conv(name + ".conv1", widths[0], c_in, 1)
                conv(name + ".conv2", widths[0], widths[0], 3)
                conv(name + ".conv3", widths[1], widths[0], 1)
            if block.endswith("s"):
                conv(name + ".skipConv", widths[-1], c_in, 1, bn_name=name + "skipConv")
            c_in = widths[-1]
        ends.append(c_in)
    if decoder is None:
        layers.append(CaffeLayer("fc", "InnerProduct", [np.zeros((1000, c_in), np.float32), np.zeros(1000, np.float32)]))
        return layers
    c3, c4, c5 = decoder
    for i in range(1, 5):
        conv("psp.pool{}.conv".format(i), 128, c_in, 1)
    conv("psp.concat.conv", 512, c_in + 4 * 128, 3)
    conv("Decoder_wc3", c3, ends[0], 1)
    conv("Decoder_wc4", c4, ends[1], 1)
    conv("Decoder_wc5", c5, 512, 1)
    for name, c_high, c_low in (("Decoder4_4", c4, c5), ("Decoder3_3", c3, c4)):
        conv(name + ".proj", c_high, c_low, 1)
        layers.append(CaffeLayer(name + ".proj/up2", "Deconvolution", [bilinear_kernel(c_high, 4).numpy()]))
        conv(name + ".conv1", c_high, 2 * c_high, 3)
    conv("Decoder_score", 19, c3, 3)
    layers.append(CaffeLayer("Decoder_score.up8", "Deconvolution", [bilinear_kernel(19, 16).numpy()]))
    return layers


@pytest.mark.parametrize("preset", list(RELEASE_NETS))
def test_every_released_layer_maps_onto_the_preset(preset):
    layers = release_net(*RELEASE_NETS[preset])
    arch = Arch.parse(preset)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(arch).state_dict().items()}
    tensors, mapped = convert_layers(layers, arch, expected)
    fixed = {x.name for x in layers if x.type == "Deconvolution"}  # checked, not weights
    assert {m.caffe for m in mapped} == {x.name for x in layers} - fixed
    assert set(tensors) == {k for k in expected if not k.endswith("num_batches_tracked")}


def merge_batchnorm(layers, eps=1e-4):
    """What the release's *_mergebn files hold: each conv X absorbs X/bn and X/bn_scale (weight, bias)."""
    by_name = {x.name: x for x in layers}
    merged = []
    for x in layers:
        if x.type in ("BatchNorm", "Scale"):
            continue
        if x.type == "Convolution":
            bn = x.name[: -len(".skipConv")] + "skipConv" if x.name.endswith(".skipConv") else x.name
            mean, var, factor = by_name[bn + "/bn"].blobs
            gamma, beta = by_name[bn + "/bn_scale"].blobs
            scale = gamma / np.sqrt(var / factor + eps)
            x = CaffeLayer(x.name, x.type, [x.blobs[0] * scale[:, None, None, None], beta - mean / factor * scale])
        merged.append(x)
    return merged


def test_merged_batchnorm_release_converts_to_the_same_function(tmp_path):
    arch = Arch.parse(TINY_SEG)
    original = random_model(arch)
    write_caffemodel(str(tmp_path / "m.caffemodel"), merge_batchnorm(release_layers(original)))
    converted, mapped = convert_caffemodel(str(tmp_path / "m.caffemodel"), arch)
    assert ("Decoder_score", "head.conv.bn.bias", (19,)) in [tuple(m) for m in mapped]
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x), rtol=1e-4, atol=1e-4)


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
