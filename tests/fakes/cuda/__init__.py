"""A fake of NVIDIA's cuda-python (``cuda.bindings.runtime`` from 12.6 on, ``cuda.cudart`` before) over
the simulated driver in ``fake_cuda``.

Importable only when ``FAKE_CUDA_LIBS`` names ``cuda-python``; ``FAKE_CUDA_PYTHON_LAYOUT`` picks
``bindings`` (12.6+, default: both layouts, as 12.6-12.9 ship the old one as a deprecated alias) or
``legacy`` (only ``cuda.cudart``, as before 12.6).
"""

import os

if "cuda-python" not in os.environ.get("FAKE_CUDA_LIBS", "pycuda,cuda-python").split(","):
    raise ModuleNotFoundError("No module named 'cuda' (FAKE_CUDA_LIBS leaves cuda-python out)", name="cuda")
