"""dfseg packaging.  Metadata lives here (not only in pyproject.toml) so that the pip shipped with
JetPack 4.6 (Python 3.6, no PEP 517/621 support) can install the device side."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "dfseg" / "__init__.py").read_text()).group(1)

# Device side (dfseg-bench, dfseg-run on a Jetson): Python 3.6, numpy 1.19, no torch.
DEVICE_REQUIRES = [
    "numpy>=1.19",
    "tqdm>=4.40",
    "dataclasses; python_version < '3.7'",
]
EXTRAS = {
    # Host side: models, export, search, training.  torch 2.13.0 satisfies the range, so a CPU
    # wheel installed first is kept (a range it does not satisfy pulls a multi-GB CUDA build).
    "host": [
        "torch>=2.1,<2.14; python_version >= '3.8'",
        "onnx>=1.14; python_version >= '3.8'",
        "onnxruntime>=1.16; python_version >= '3.8'",
        # FP16 graphs (dfseg.precision); INT8 graphs use onnxruntime.quantization.
        "onnxconverter-common>=1.14; python_version >= '3.8'",
        "safetensors>=0.4; python_version >= '3.8'",
        "matplotlib>=3.5; python_version >= '3.8'",
        "optuna>=3.4; python_version >= '3.8'",
    ],
    "onnxruntime": ["onnxruntime"],
    # TensorRT itself ships with JetPack; these are the Python pieces around it.
    "jetson": ["pycuda", "jetson-stats"],
    # Desktop/server NVIDIA GPUs (on Jetson, TensorRT comes with JetPack: use "jetson").
    # dfseg.backends.tensorrt.compat knows 8.2 to 11.x; 12 may remove names it uses.
    "tensorrt": ["tensorrt>=8.6,<12", "cuda-python"],
    "video": ["opencv-python-headless<5"],
    "distributed": ["ray[default]>=2.9; python_version >= '3.8'"],
    "dev": [
        "pytest>=7",
        "pytest-timeout",
        # Random test order on every run (the seed is printed), so no test can lean on another's state.
        "pytest-randomly>=3.12",
        "hypothesis>=6",
        "ruff>=0.6",
        "vermin>=1.6",
        "opencv-python-headless<5",
    ],
}

setup(
    name="dfseg",
    version=VERSION,
    description="Real-time semantic segmentation on NVIDIA Jetson and Partial Order Pruning search",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.6",
    packages=find_packages(include=["dfseg", "dfseg.*"]),
    install_requires=DEVICE_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "dfseg-export=dfseg.cli.export:main",
            "dfseg-bench=dfseg.cli.bench:main",
            "dfseg-search=dfseg.cli.search:main",
            "dfseg-run=dfseg.cli.run:main",
            "dfseg-eval=dfseg.cli.eval:main",
            "dfseg-convert=dfseg.cli.convert:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
