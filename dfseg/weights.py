"""Saving and loading model weights, checked tensor by tensor.

Format: safetensors (no code execution on load), with the architecture's canonical JSON in the
metadata under ``dfseg.arch``.  ``.pt``/``.pth`` state dicts are read with
``torch.load(weights_only=True)``, which refuses pickled code.  Host side (needs torch).
"""

import os
import warnings
from typing import Dict, List, Optional

import torch
from torch import nn

from .arch import Arch, ArchError
from .errors import UserError
from .fileio import write_atomic

ARCH_METADATA_KEY = "dfseg.arch"
FORMAT_METADATA_KEY = "format"
TORCH_SUFFIXES = (".pt", ".pth")
# BatchNorm's step counter is bookkeeping, not a weight: files converted from other frameworks
# (the release's Caffe weights) legitimately lack it.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class WeightsError(UserError):
    """A weights file cannot be read or does not fit the model; the message names file and tensor."""


def _model_arch(model: nn.Module) -> Optional[Arch]:
    arch = getattr(model, "arch", None)
    return arch if isinstance(arch, Arch) else None


def save_weights(model: nn.Module, path: str, arch: Optional[Arch] = None) -> str:
    """Write ``model``'s state dict to ``path`` (safetensors) atomically; returns ``path``.

    ``arch`` (default: ``model.arch`` when the model has one) is stored in the metadata.
    """
    from safetensors.torch import save

    arch = arch or _model_arch(model)
    metadata = {FORMAT_METADATA_KEY: "pt"}
    if arch is not None:
        metadata[ARCH_METADATA_KEY] = arch.dumps()
    # safetensors refuses shared or non-contiguous storage: give every tensor its own copy.
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise WeightsError("{}: directory {} does not exist; create it first".format(path, directory))
    try:
        # Serialised in memory first: safetensors' own file writer turns a full disk into a
        # SafetensorError, where write_atomic's plain writes give the one-line DiskFullError.
        write_atomic(path, save(tensors, metadata=metadata))
    except OSError as exc:
        raise WeightsError("{}: cannot write weights ({})".format(path, exc.strerror or exc)) from None
    return path


def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise WeightsError("{}: weights file not found".format(path))


def read_weights(path: str) -> Dict[str, torch.Tensor]:
    """The tensors stored in ``path`` (safetensors, or a .pt/.pth state dict)."""
    _check_exists(path)
    if path.endswith(TORCH_SUFFIXES):
        return _read_torch(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            "{}: not a readable safetensors file ({}); weights must be .safetensors, .pt or .pth".format(path, exc)
        ) from None


def _read_torch(path: str) -> Dict[str, torch.Tensor]:
    try:
        # torch warns about the file's pickle protocol on its way to refusing it; dfseg's own one line
        # says what is wrong, so torch's lines are kept off the user's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        # torch's own advice (weights_only=False) would run the file's code: it is never passed on.
        if "Unsupported global" in str(exc):
            reason = "it holds pickled Python objects, not only tensors"
        elif "weights_only" in str(exc) or not str(exc).strip():
            reason = "it is not a torch weights file, or it is damaged"
        else:
            reason = str(exc).strip().splitlines()[0]
        raise WeightsError(
            "{}: cannot read as a weights-only torch file ({}); dfseg never unpickles code: save a plain "
            "state_dict (torch.save(model.state_dict(), ...)) or convert it to .safetensors".format(path, reason)
        ) from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError("{}: expected a state_dict (a mapping of names to tensors)".format(path))
    return dict(data)


def read_weights_arch(path: str) -> Optional[Arch]:
    """The architecture stored in a safetensors file's metadata, or None."""
    _check_exists(path)
    if path.endswith(TORCH_SUFFIXES):
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            text = (handle.metadata() or {}).get(ARCH_METADATA_KEY)
    except (SafetensorError, OSError) as exc:
        raise WeightsError("{}: not a readable safetensors file ({})".format(path, exc)) from None
    if text is None:
        return None
    try:
        return Arch.from_json(text)
    except ArchError as exc:
        raise WeightsError("{}: metadata {} is not a valid architecture: {}".format(path, ARCH_METADATA_KEY, exc)) from None


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """Load ``path`` into ``model`` after checking every tensor; returns ``model``.

    Errors (``WeightsError``, a ``UserError``) name the file and the tensor: missing tensors,
    unexpected tensors, shape mismatches (both shapes), an architecture in the file's metadata that
    differs from ``model.arch``.
    """
    file_arch = read_weights_arch(path)
    model_arch = _model_arch(model)
    if file_arch is not None and model_arch is not None and file_arch != model_arch:
        raise WeightsError(
            "{}: weights are for architecture {} but the model is {}".format(path, file_arch.short(), model_arch.short())
        )
    tensors = read_weights(path)
    expected = model.state_dict()
    problems: List[str] = []
    missing = [k for k in expected if k not in tensors and not k.endswith(OPTIONAL_SUFFIXES)]
    if missing:
        problems.append("missing tensor(s) {}".format(_names(missing)))
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        problems.append("unexpected tensor(s) {}".format(_names(unexpected)))
    for name, tensor in tensors.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            problems.append(
                "tensor {} has shape {} in the file but {} in the model".format(
                    name, list(tensor.shape), list(expected[name].shape)
                )
            )
    if problems:
        raise WeightsError("{}: weights do not fit the model: {}".format(path, "; ".join(problems)))
    model.load_state_dict(tensors, strict=False)
    return model


def _names(names: List[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += " and {} more".format(len(names) - limit)
    return shown
