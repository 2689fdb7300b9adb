"""Weights files: safetensors with the architecture in the metadata, weights-only .pt, and an error
that names the tensor (and both shapes) for every way a file can fail to fit."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from dfseg.arch import PRESETS  # noqa: E402
from dfseg.errors import UserError  # noqa: E402
from dfseg.models import create_model  # noqa: E402
from dfseg.models.layers import randomize_batchnorm  # noqa: E402
from dfseg.weights import ARCH_METADATA_KEY, load_weights, read_weights_arch, save_weights  # noqa: E402

NAME = "dflite-seg"


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return randomize_batchnorm(create_model(NAME), seed=5)


@pytest.fixture()
def saved(trained, tmp_path):
    return save_weights(trained, str(tmp_path / "w.safetensors"))


def _fresh():
    torch.manual_seed(1)
    return create_model(NAME)


def test_round_trip_restores_every_tensor_and_the_output(trained, saved) -> None:
    model = load_weights(_fresh(), saved)
    expected = trained.state_dict()
    assert set(model.state_dict()) == set(expected)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), trained.eval()(x))
    with safe_open(saved, framework="pt") as handle:
        assert json.loads(handle.metadata()[ARCH_METADATA_KEY]) == PRESETS[NAME].to_json()
    assert read_weights_arch(saved) == PRESETS[NAME]
    assert os.listdir(os.path.dirname(saved)) == ["w.safetensors"], "no temporary file left"


def test_create_model_loads_pretrained_weights(trained, saved) -> None:
    model = create_model(NAME, pretrained_weights=saved)
    assert torch.equal(model.head.conv.bn.running_var, trained.head.conv.bn.running_var)


def test_torch_state_dict_files_are_read_weights_only(trained, tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), str(path))
    model = load_weights(_fresh(), str(path))
    assert torch.equal(model.stem.conv1.conv.weight, trained.stem.conv1.conv.weight)
    wrapped = tmp_path / "w.pth"
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, str(wrapped))
    load_weights(_fresh(), str(wrapped))
    # A pickle carrying arbitrary objects is refused, not executed.
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"x": torch.zeros(1), "obj": _Payload()}, str(unsafe))
    with pytest.raises(UserError, match="unsafe.pt: cannot read as a weights-only torch file"):
        load_weights(_fresh(), str(unsafe))


class _Payload:
    pass


def _tensors(model):
    return {k: v.contiguous().clone() for k, v in model.state_dict().items()}


def _loading_fails(tensors, path, pattern) -> None:
    """Save ``tensors`` to ``path``; loading them into a fresh model must fail naming ``pattern``."""
    save_file(tensors, path)
    with pytest.raises(UserError, match=pattern):
        load_weights(_fresh(), path)


def test_missing_tensor_is_named(trained, tmp_path) -> None:
    tensors = _tensors(trained)
    del tensors["ppm.conv.conv.weight"]
    _loading_fails(tensors, str(tmp_path / "m.safetensors"), r"m.safetensors: .*missing tensor\(s\) ppm.conv.conv.weight")


def test_unexpected_tensor_is_named(trained, tmp_path) -> None:
    tensors = _tensors(trained)
    tensors["decoder.extra.weight"] = torch.zeros(3)
    _loading_fails(tensors, str(tmp_path / "u.safetensors"), r"unexpected tensor\(s\) decoder.extra.weight")


def test_shape_mismatch_names_both_shapes(trained, tmp_path) -> None:
    tensors = _tensors(trained)
    tensors["wc3.conv.weight"] = torch.zeros(19, 64, 1, 1)
    _loading_fails(tensors, str(tmp_path / "s.safetensors"),
                   r"tensor wc3.conv.weight has shape \[19, 64, 1, 1\] in the file but \[32, 64, 1, 1\]")


def test_architecture_mismatch_and_missing_bn_counter(trained, saved, tmp_path) -> None:
    with pytest.raises(UserError, match="weights are for architecture .* but the model is"):
        load_weights(create_model("df1-seg"), saved)
    # Converted weights (e.g. from Caffe) have no BatchNorm step counters: that is fine.
    tensors = {k: v for k, v in _tensors(trained).items() if not k.endswith("num_batches_tracked")}
    path = str(tmp_path / "c.safetensors")
    save_file(tensors, path)
    assert read_weights_arch(path) is None
    load_weights(_fresh(), path)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(UserError, match="nope.safetensors: weights file not found"):
        load_weights(_fresh(), str(tmp_path / "nope.safetensors"))
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(UserError, match="g.safetensors: not a readable safetensors file"):
        load_weights(_fresh(), str(garbage))
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], str(not_dict))
    with pytest.raises(UserError, match="expected a state_dict"):
        load_weights(_fresh(), str(not_dict))


def test_save_refuses_missing_directory_and_replaces_atomically(trained, tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        save_weights(trained, str(tmp_path / "no" / "w.safetensors"))
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")
    save_weights(trained, str(target), arch=PRESETS[NAME])
    assert read_weights_arch(str(target)) == PRESETS[NAME]
    assert os.listdir(tmp_path) == ["w.safetensors"]
