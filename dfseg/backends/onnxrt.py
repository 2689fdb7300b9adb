"""ONNX Runtime runner: the default backend on every machine (CPU), with the CUDA or TensorRT
execution providers when the installed onnxruntime has them.

Device side: Python 3.6, no torch; onnxruntime is imported when the runner activates.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..build_config import BuildConfig
from ..errors import UserError
from .base import BaseRunner, TensorMeta

# Short names users type -> ONNX Runtime provider names, fastest first.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

MIN_THREADS = 1  # threads (--threads): 0 would be ONNX Runtime's own default, not one thread
# More intra-op threads than any Jetson or host has cores only slow inference down, and ONNX Runtime starts
# every one of them when the session opens: 100000 takes minutes and the memory of their stacks.
MAX_THREADS = 256
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def available_providers() -> List[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def resolve_providers(requested: Optional[Sequence[str]]) -> List[str]:
    """Map short names (cpu, cuda, tensorrt) to installed providers; None picks all installed, fastest first."""
    installed = available_providers()
    if requested is None:
        return [full for full in PROVIDERS.values() if full in installed] or installed
    chosen = []
    for name in requested:
        full = PROVIDERS.get(name.lower(), name)
        if full not in installed:
            raise UserError(
                "ONNX Runtime provider {!r} is not installed here (installed: {}); install onnxruntime-gpu "
                "for cuda/tensorrt or use --providers cpu".format(name, ", ".join(installed))
            )
        chosen.append(full)
    return chosen


class OnnxRuntimeRunner(BaseRunner):
    """Runs an ONNX model (a path or the serialized bytes) in an ``onnxruntime.InferenceSession``.

    With a ``config`` at fp16 or int8, the session runs the derived graph (``dfseg.precision.graph_for``,
    cached beside the engines): ``built_model`` names the file that actually ran.

    ``threads`` sets intra-op threads (None: ONNX Runtime's default).  Spinning is off by default:
    an idle session's spinning thread pool steals cores from whatever runs next, which ruins
    measurements that rotate between several sessions.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model: Union[str, bytes],
        providers: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
        spinning: bool = False,
        name: Optional[str] = None,
        config: Optional[BuildConfig] = None,
    ) -> None:
        if isinstance(model, str) and not os.path.isfile(model):
            raise UserError("{}: ONNX model file not found; export one with dfseg-export".format(model))
        if isinstance(model, str) and os.path.getsize(model) == 0:
            # ONNX Runtime's own words for it are a traceback's "No graph was found in the protobuf".
            raise UserError("{}: empty file (0 bytes), not an ONNX model; export it again with dfseg-export".format(model))
        label = os.path.basename(model) if isinstance(model, str) else None
        super().__init__(name or label)
        self.model = model
        self.requested_providers = providers
        self.threads = threads
        self.spinning = spinning
        self.config = (config or BuildConfig()).checked()
        self.precision = self.config.precision
        if self.precision != "fp32" and not isinstance(model, str):
            raise UserError("{}: fp16/int8 need the model as a file".format(self.name))
        self.built_model = model if isinstance(model, str) else None  # type: Optional[str]
        self.session = None
        self._inputs = {}  # type: Dict[str, TensorMeta]
        self._output_names = []  # type: List[str]
        self._output_shapes = {}  # type: Dict[str, Tuple[int, ...]]

    def activate_impl(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        from ..precision import graph_for, onnx_available

        if isinstance(self.model, str) and (self.precision != "fp32" or onnx_available()):
            # Also for fp32: graph_for refuses an fp16/int8 graph run under another precision's name.
            self.built_model = graph_for(self.model, self.config, "onnxruntime")
        try:
            self.session = onnxruntime.InferenceSession(
                self.built_model or self.model, sess_options=options, providers=resolve_providers(self.requested_providers)
            )
        except (onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                onnxruntime.capi.onnxruntime_pybind11_state.InvalidGraph) as exc:
            raise UserError("{}: not a valid ONNX model ({})".format(self.name, str(exc).splitlines()[0])) from None
        unsupported = [arg for arg in self.session.get_inputs() if arg.type not in _ORT_DTYPES]
        if unsupported:
            self.session = None
            raise UserError("{}: input {!r} is a {}; dfseg feeds numeric tensors ({}), export a model whose input is "
                            "an image tensor".format(self.model if isinstance(self.model, str) else self.name, unsupported[0].name, unsupported[0].type,
                                                     ", ".join(sorted(t[7:-1] for t in _ORT_DTYPES))))
        self._inputs = {
            arg.name: TensorMeta(tuple(d if isinstance(d, int) else -1 for d in arg.shape), np.dtype(_ORT_DTYPES[arg.type]))
            for arg in self.session.get_inputs()
        }
        self._output_names = [arg.name for arg in self.session.get_outputs()]
        self._output_shapes = {arg.name: tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
                               for arg in self.session.get_outputs()}

    def deactivate_impl(self) -> None:
        self.session = None

    def input_metadata_impl(self) -> Dict[str, TensorMeta]:
        return self._inputs

    def output_names(self) -> List[str]:
        self._require_active()
        return list(self._output_names)

    def output_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Each output's shape as the graph declares it (-1: a dynamic dimension; (): not declared)."""
        self._require_active()
        return dict(self._output_shapes)

    @property
    def providers(self) -> List[str]:
        self._require_active()
        return list(self.session.get_providers())

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, values))
