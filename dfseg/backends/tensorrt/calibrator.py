"""TensorRT 8.x's implicit INT8 calibration: an entropy calibrator fed by ``dfseg.calibration``.

Only TensorRT < 10 uses it (TX2's 8.2 has no explicit-quantization path worth using); TensorRT 10 and
11 build the Q/DQ graph of ``dfseg.precision`` instead.  The calibration cache (TensorRT's text
format) is written atomically and reused: with a cache present, TensorRT reads it and never asks for
images, so INT8 engines can be rebuilt on a device that has no calibration data.

Device side: Python 3.6, no torch; tensorrt comes in as the ``trt`` argument.
"""

from typing import Any, List, Optional, Tuple

import numpy as np

from ...calibration import CalibrationFeeder
from ...errors import UserError
from ...fileio import write_atomic


def read_cache(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read() or None
    except OSError:
        return None


def write_cache(path: str, data: bytes) -> None:
    write_atomic(path, bytes(data))


def make_entropy_calibrator(trt: Any, memory: Any, input_name: str, shape: Tuple[int, ...], source: Optional[str],
                            cache_path: str, limit: int = 500) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``CalibrationFeeder`` through one device buffer
    (``memory``: a ``cuda_memory.CudaMemory``), reading/writing ``cache_path``."""
    if read_cache(cache_path) is None and not source:
        raise UserError("int8: no calibration cache at {} and no calibration images; pass calibration=FOLDER, "
                        "VIDEO or CITYSCAPES_ROOT".format(cache_path))

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = None  # type: Optional[CalibrationFeeder]
            self.host = memory.host(tuple(shape), np.float32)
            self.device = memory.device(self.host.nbytes)

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: List[str], *unused: Any) -> Optional[List[int]]:
            if self.feeder is None:
                self.feeder = CalibrationFeeder(source or "", shape, limit)
            batch = self.feeder.next_batch()
            if batch is None:
                return None
            np.copyto(self.host, batch)
            memory.htod(self.device, self.host)
            memory.synchronize()
            return [int(self.device) for _ in names]

        def read_calibration_cache(self) -> Optional[bytes]:
            return read_cache(cache_path)

        def write_calibration_cache(self, cache: Any) -> None:
            write_cache(cache_path, bytes(cache))

    return EntropyCalibrator()
