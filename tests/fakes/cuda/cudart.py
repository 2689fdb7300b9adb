"""``cuda.cudart`` (cuda-python before 12.6; a deprecated alias in 12.6-12.9): the simulated cudart of
``cuda._runtime``."""

from cuda._runtime import *  # noqa: F401,F403
from cuda._runtime import cudaError_t, cudaMemcpyKind  # noqa: F401
