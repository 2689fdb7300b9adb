"""A fake of inducer/pycuda (``import pycuda.driver``) over the simulated driver in ``fake_cuda``.

Importable only when ``FAKE_CUDA_LIBS`` (comma separated, default ``pycuda,cuda-python``) names
``pycuda``, so a test can pose as a JetPack without it.  See ``pycuda.driver`` for what is modelled
and where in pycuda's source each behaviour comes from.
"""

import os

if "pycuda" not in os.environ.get("FAKE_CUDA_LIBS", "pycuda,cuda-python").split(","):
    raise ModuleNotFoundError("No module named 'pycuda' (FAKE_CUDA_LIBS leaves it out)", name="pycuda")

VERSION = (2022, 2, 2)
VERSION_TEXT = "2022.2.2"
