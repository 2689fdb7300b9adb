"""``cuda.bindings.runtime`` (cuda-python >= 12.6): the simulated cudart of ``cuda._runtime``."""

from cuda._runtime import *  # noqa: F401,F403
from cuda._runtime import cudaError_t, cudaMemcpyKind  # noqa: F401
