"""cuda-python >= 12.6's package layout (``cuda.bindings.runtime``); see ``cuda/__init__.py``."""

import os

if os.environ.get("FAKE_CUDA_PYTHON_LAYOUT", "bindings") == "legacy":
    raise ModuleNotFoundError("No module named 'cuda.bindings' (cuda-python < 12.6)", name="cuda.bindings")
