"""Multiply-accumulate (MAC) and parameter counts.

MACs are counted with forward hooks on Conv2d, ConvTranspose2d, Linear and the fixed bilinear
deconvolutions, while the model runs on ``torch.device("meta")`` tensors: shapes propagate, no
arithmetic happens, so 2048x1024 costs nothing.  Pooling, resizing, BN, ReLU and additions are not
counted (the usual convention; they are a fraction of a percent here).

Convention for the fixed bilinear deconvolutions of DF-Seg (``FixedBilinearUpsample``): they are
NOT counted by default.  With them excluded the counts reproduce every number the release states
(DF1-Seg 41.6G, DF2-Seg1 84.3G, DF2-Seg2 95.3G, DFlite-Seg 32.8G at 2048x1024); counting them, as
grouped deconvolutions, adds 0.21-0.27G per model (the x8 head alone is 0.16G) and DF-Seg's
numbers no longer round to the release's.  ``include_fixed_upsampling=True`` gives that count.
"""

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from ..sizes import SizeLike, as_size
from .layers import FixedBilinearUpsample


def _conv_macs(module: nn.Conv2d, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _deconv_macs(module: nn.ConvTranspose2d, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    # Every input element is scattered into (c_out / groups) * kh * kw outputs.
    kh, kw = module.kernel_size
    return inputs[0].numel() * (module.out_channels // module.groups) * kh * kw


def _fixed_upsample_macs(module: FixedBilinearUpsample, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    return inputs[0].numel() * module.kernel_size * module.kernel_size


def _linear_macs(module: nn.Linear, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_macs(model: nn.Module, size: SizeLike, include_fixed_upsampling: bool = False, batch: int = 1) -> int:
    """MACs of one forward pass of ``model`` at ``size`` (width x height, video order)."""
    return sum(macs_by_module(model, size, include_fixed_upsampling, batch).values())


def macs_by_module(
    model: nn.Module, size: SizeLike, include_fixed_upsampling: bool = False, batch: int = 1
) -> Dict[str, int]:
    """MACs per counted module (module path -> MACs), in execution order."""
    size = as_size(size)
    counters: List[Tuple[Any, Any]] = [
        (nn.Conv2d, _conv_macs),
        (nn.ConvTranspose2d, _deconv_macs),
        (nn.Linear, _linear_macs),
    ]
    if include_fixed_upsampling:
        counters.append((FixedBilinearUpsample, _fixed_upsample_macs))
    counts: Dict[str, int] = {}
    handles = []

    def make_hook(name: str, counter: Any) -> Any:
        def hook(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            counts[name] = counts.get(name, 0) + int(counter(module, inputs, output))

        return hook

    for name, module in model.named_modules():
        for module_type, counter in counters:
            if isinstance(module, module_type):
                handles.append(module.register_forward_hook(make_hook(name, counter)))
                break
    # Run with meta copies of every parameter and buffer: the model itself is not touched.
    meta_state = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers())
    }
    was_training = model.training
    model.eval()
    try:
        x = torch.empty(batch, 3, size.height, size.width, device="meta")
        with torch.no_grad():
            torch.func.functional_call(model, meta_state, (x,), tie_weights=False, strict=False)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


def count_params(model: nn.Module) -> int:
    """Number of parameters (the fixed upsampling kernels are buffers, not parameters)."""
    return sum(p.numel() for p in model.parameters())
