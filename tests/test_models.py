"""DF models: structure as the release defines it, any input size, module paths = part names,
standalone parts equal to the network's own modules, and the registry."""

import math
from typing import Dict, List, Tuple

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from dfseg.arch import PRESETS, Arch  # noqa: E402
from dfseg.errors import UserError  # noqa: E402
from dfseg.models import DFNet, DFSeg, build_part, create_model, list_models, model_arch, part_inputs  # noqa: E402
from dfseg.models.layers import BN_EPS, ConvBN, FixedBilinearUpsample, bilinear_kernel, randomize_batchnorm  # noqa: E402
from dfseg.parts import network_parts, ppm_kernels, stage_shapes  # noqa: E402

SEG_PRESETS = [name for name, arch in PRESETS.items() if arch.is_segmentation]
BACKBONE_PRESETS = [name for name, arch in PRESETS.items() if not arch.is_segmentation]
# Mixed block kinds, a non-default stem, a custom decoder and class count: any valid Arch must build.
CUSTOM_ARCHS = [
    Arch.create([[[16, 64], [16, 64]], [128, 128], [[64, 256], [128, 256]]], block=["bottleneck", "basic", "bottleneck"], stem=[16, 32]),
    Arch.create([[64], [64, 128], [[128, 512], [256, 512]]], block=["basic", "basic", "bottleneck"], decoder=[32, 7, 64], classes=7),
    Arch.create([[64], [[32, 128]], [256]], block=["basic", "bottleneck", "basic"], decoder=[19, 19, 19], output_stride=8),
]


def _expected_shape(arch: Arch, width: int, height: int) -> Tuple[int, ...]:
    if not arch.is_segmentation:
        return (1, arch.classes)
    if arch.output_stride == 8:
        h, w = stage_shapes(height, width)[2]
        return (1, arch.classes, h, w)
    return (1, arch.classes, height, width)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_forward_at_two_sizes(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    arch = PRESETS[name]
    assert model.arch == arch and isinstance(model, DFSeg if arch.is_segmentation else DFNet)
    # 250x170 is not a multiple of 32 (stage 5 is 8x6): exercises ceil rounding and crops.
    sizes = [(160, 128), (250, 170)] if arch.is_segmentation else [(224, 224), (97, 161)]
    for width, height in sizes:
        with torch.no_grad():
            out = model(torch.randn(1, 3, height, width))
        assert tuple(out.shape) == _expected_shape(arch, width, height)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", CUSTOM_ARCHS, ids=lambda a: a.short())
def test_any_valid_arch_builds_and_runs(arch: Arch) -> None:
    model = create_model(arch)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 97))
    assert tuple(out.shape) == _expected_shape(arch, 97, 65)


def _output_shapes(model: nn.Module, names: List[str], width: int, height: int) -> Dict[str, Tuple[int, ...]]:
    """Output shape of each named module for one meta-device forward pass (no compute)."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
        for name in names
    ]
    meta = {k: torch.empty_like(v, device="meta") for k, v in list(model.named_parameters()) + list(model.named_buffers())}
    torch.func.functional_call(model, meta, (torch.empty(1, 3, height, width, device="meta"),), strict=False)
    for handle in handles:
        handle.remove()
    return shapes


@pytest.mark.parametrize("name", list(PRESETS) + ["custom-seg"])
@pytest.mark.parametrize(
    "width,height", [(224, 224), (640, 360), (1280, 720), (1920, 1080), (2048, 1024), (250, 170)]
)
def test_module_paths_and_shapes_follow_network_parts(name: str, width: int, height: int) -> None:
    arch = CUSTOM_ARCHS[1] if name == "custom-seg" else PRESETS[name]
    with torch.device("meta"):
        model = create_model(arch)
    parts = network_parts(arch, height, width)
    modules = dict(model.named_modules())
    missing = [p.name for p in parts if p.name not in modules]
    assert not missing, "parts without a module: {}".format(missing)
    shapes = _output_shapes(model, [p.name for p in parts], width, height)
    for part in parts:
        assert shapes[part.name][1:] == (part.c_out, part.h_out, part.w_out) or (
            part.kind == "classifier" and shapes[part.name] == (1, part.c_out)
        ), part


def test_release_structure_details() -> None:
    model = create_model("df2a")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)
    assert all(m.eps == BN_EPS == 1e-4 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.classifier.fc.bias is not None
    # Projection on stage 3's first block although 64 -> 64; basic stride on the first 3x3.
    first = model.stage3[0]
    assert first.shortcut is not None and first.shortcut.conv.stride == (2, 2)
    assert first.conv1.conv.stride == (2, 2) and first.conv2.conv.stride == (1, 1)
    assert model.stage3[1].shortcut is None
    assert model.stage3[2].shortcut is not None and model.stage3[2].shortcut.conv.stride == (1, 1)  # 64 -> 128
    # Bottleneck: stride on the middle 3x3.
    b = model.stage4[0]
    assert (b.conv1.conv.stride, b.conv2.conv.stride, b.conv3.conv.stride) == ((1, 1), (2, 2), (1, 1))
    assert model.stage4[1].shortcut is None
    # The first (512,512,1024) block projects (inner width grows); the second does not.
    assert [blk.shortcut is not None for blk in model.stage5] == [True, False, False, False, True, False]
    # Post-activation: no ReLU on the residual branch's last conv.
    assert b.conv3.relu is None and b.conv1.relu is not None


def test_segmentation_decoder_structure() -> None:
    model = create_model("df1-seg")
    c3, c4, c5 = PRESETS["df1-seg"].decoder
    assert [b.conv.out_channels for b in model.ppm.branches] == [128] * 4
    assert model.ppm.conv.conv.in_channels == 512 + 4 * 128 and model.ppm.conv.conv.kernel_size == (3, 3)
    assert model.wc5.conv.in_channels == 512 and model.wc5.conv.out_channels == c5
    assert (model.fuse4.proj.conv.in_channels, model.fuse4.proj.conv.out_channels) == (c5, c4)
    assert (model.fuse4.conv.conv.in_channels, model.fuse4.conv.conv.out_channels) == (2 * c4, c4)
    assert model.head.conv.relu is None and model.head.up.factor == 8
    assert create_model("df1-seg-d8").head.up is None
    # The fixed deconvolutions are not weights: nothing of them in the state dict or parameters.
    assert not [k for k in model.state_dict() if ".up." in k]


def test_bilinear_kernel_is_caffes_filler() -> None:
    k4 = bilinear_kernel(2, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k4[1, 0], taps[:, None] * taps[None, :])
    # x2 upsampling of a constant image is constant away from the border.
    up = FixedBilinearUpsample(3, 2)(torch.full((1, 3, 5, 6), 2.0))
    assert up.shape == (1, 3, 10, 12) and torch.allclose(up[..., 1:-1, 1:-1], torch.tensor(2.0))
    up8 = FixedBilinearUpsample(1, 8)(torch.full((1, 1, 4, 4), 1.0))
    assert up8.shape == (1, 1, 32, 32) and torch.allclose(up8[..., 4:-4, 4:-4], torch.tensor(1.0))


def test_pyramid_pooling_kernels_at_cityscapes_size() -> None:
    h5, w5 = stage_shapes(1024, 2048)[4]
    assert ppm_kernels(h5, w5) == [32, 16, 8, 4]
    # A ramp along the width: the 32-kernel branch averages exactly 32x32 windows (two bins).
    x = torch.arange(w5, dtype=torch.float32).expand(1, 1, h5, w5)
    pooled = torch.nn.functional.avg_pool2d(x, 32, 32, ceil_mode=True, count_include_pad=False)
    assert pooled.flatten().tolist() == [15.5, 47.5]


def _capture_inputs(model: nn.Module, names: List[str], x: torch.Tensor) -> Dict[str, tuple]:
    captured: Dict[str, tuple] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, (i, o))) for n in names
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return captured


@pytest.mark.parametrize("name", ["df1-seg", "df2a", "df1-seg-d8", "custom-seg"])
def test_build_part_equals_network_module(name: str) -> None:
    arch = CUSTOM_ARCHS[1] if name == "custom-seg" else PRESETS[name]
    width, height = (250, 170) if arch.is_segmentation else (128, 96)
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(arch), seed=1)
    parts = network_parts(arch, height, width)
    captured = _capture_inputs(model, [p.name for p in parts], torch.randn(1, 3, height, width))
    modules = dict(model.named_modules())
    for part in parts:
        inputs, expected = captured[part.name]
        inputs = tuple(t for t in inputs if isinstance(t, torch.Tensor))  # the head also gets out_size
        network_module = modules[part.name]
        if part.kind == "bottleneck":  # the shape walk and the network agree on every projection
            assert part.projection == (network_module.shortcut is not None), part
        standalone = build_part(part)
        standalone.load_state_dict(network_module.state_dict())  # strict: same structure
        example = part_inputs(part)
        assert [tuple(t.shape) for t in example] == [tuple(t.shape) for t in inputs], part
        with torch.no_grad():
            actual = standalone(*inputs)
        assert actual.shape == expected.shape, part
        assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max())), part


def test_build_part_follows_the_parts_projection_flag() -> None:
    part = [p for p in network_parts(PRESETS["df2a"], 224, 224) if p.name == "stage5.4"][0]
    assert part.c_in == part.c_out and part.stride == 1 and part.projection
    assert build_part(part).shortcut is not None
    assert build_part(part._replace(projection=False)).shortcut is None
    assert build_part(part, projection=False).shortcut is None


def test_registry_lists_presets_and_reference_models() -> None:
    names = list_models()
    assert names[: len(PRESETS)] == list(PRESETS)
    for name in names:
        arch = model_arch(name)
        assert (arch is None) == (name not in PRESETS)
    reference = [n for n in names if n not in PRESETS]
    if reference:  # dfseg.models.table1 exists: its models build through the registry
        model = create_model(reference[0], num_classes=10)
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_create_model_accepts_every_arch_spelling(tmp_path) -> None:
    arch = PRESETS["df1-seg"]
    path = tmp_path / "a.json"
    path.write_text(arch.dumps())
    for spelling in ("df1-seg", arch.short(), arch.dumps(), str(path), arch):
        assert create_model(spelling).arch == arch
    assert not create_model("df1").training


def test_num_classes_override_follows_k_in_decoder() -> None:
    model = create_model("df1-seg", num_classes=7)
    assert model.arch.classes == 7 and model.arch.decoder == (7, 32, 128)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7, 64, 64)
    assert create_model("df1", num_classes=10).classifier.fc.out_features == 10


def test_create_model_errors_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(UserError, match="expected 3 stages"):
        create_model("64x3_128x3")
    with pytest.raises(UserError, match="missing.json"):
        create_model("missing.json")


def test_convbn_has_no_bias_and_optional_relu() -> None:
    unit = ConvBN(3, 4, 3, 2, relu=False)
    assert unit.conv.bias is None and unit.relu is None and unit.conv.padding == (1, 1)
    out = unit.eval()(torch.randn(1, 3, 7, 9))
    assert out.shape == (1, 4, math.ceil(7 / 2), math.ceil(9 / 2))
