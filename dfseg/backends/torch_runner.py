"""Torch runner (host side, Python >= 3.8): runs an ``nn.Module`` through the same interface, so the
exported ONNX model can be checked against its source and both benchmarked with one protocol."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .base import BaseRunner, TensorMeta


class TorchRunner(BaseRunner):
    """``input_shapes`` maps input names to shapes (float32); outputs are named by ``output_names``."""

    backend = "torch"

    def __init__(
        self,
        module,
        input_shapes: Dict[str, Tuple[int, ...]],
        output_names: Sequence[str] = ("output",),
        device: str = "cpu",
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name or type(module).__name__)
        self.module = module
        self.input_shapes = dict(input_shapes)
        self.output_names = list(output_names)
        self.device = device
        self._events = None

    def activate_impl(self) -> None:
        import torch

        self.module = self.module.to(self.device).eval()
        if self.device.startswith("cuda"):
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def deactivate_impl(self) -> None:
        self._events = None

    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        return {name: TensorMeta(tuple(shape), np.dtype(np.float32)) for name, shape in self.input_shapes.items()}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        inputs = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.device) for name in self.input_shapes]
        with torch.inference_mode():
            if self._events is not None:
                start, end = self._events
                start.record()
                outputs = self.module(*inputs)
                end.record()
            else:
                outputs = self.module(*inputs)
        if not isinstance(outputs, (tuple, list)):
            outputs = (outputs,)
        result = {name: out.detach().cpu().numpy() for name, out in zip(self.output_names, outputs)}
        if self._events is not None:
            self._events[1].synchronize()
            self.last_compute_ms = float(self._events[0].elapsed_time(self._events[1]))
        return result
