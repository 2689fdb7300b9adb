"""Everything that only TensorRT needs: the version shims (``compat``), the engine builder and its cache
(``builder``, ``engines``), the runner (``runner``), the trtexec driver (``trtexec``), CUDA memory,
TensorRT 8.x's implicit calibrator and per-layer profiles.

Nothing is imported here, so ``import dfseg.backends.tensorrt`` works with no TensorRT installed;
``tensorrt`` itself loads when a runner activates.  Device side: Python 3.6, no torch.
"""
