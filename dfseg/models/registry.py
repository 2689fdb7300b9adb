"""Model registry (timm style): DF presets from ``dfseg.arch.PRESETS`` plus the reference backbones
of ``dfseg.models.table1`` (listed only when that module exists)."""

from typing import Callable, Dict, List, Optional, Union

from torch import nn

from ..arch import PRESETS, Arch, ArchError
from ..errors import UserError


def _reference_models() -> Dict[str, Callable[..., nn.Module]]:
    # Imported lazily: the reference models are optional extras of the registry.
    try:
        from .table1 import REFERENCE_MODELS
    except ModuleNotFoundError as exc:
        if exc.name != __package__ + ".table1":
            raise
        return {}
    return dict(REFERENCE_MODELS)


def list_models() -> List[str]:
    """DF presets first (backbones, then DF-Seg), then reference models."""
    return list(PRESETS) + [name for name in _reference_models() if name not in PRESETS]


def list_reference_models() -> List[str]:
    """``dfseg.arch.REFERENCE_MODEL_NAMES`` where their builders are installed (else none)."""
    return list(_reference_models())


def model_arch(name: str) -> Optional[Arch]:
    """The ``Arch`` behind a model name (preset, short string, JSON, .json path); None for reference models."""
    if name in _reference_models() and name not in PRESETS:
        return None
    return Arch.parse(name)


def with_classes(arch: Arch, num_classes: int) -> Arch:
    """``arch`` predicting ``num_classes``; decoder widths equal to the old class count (the paper's K)
    follow the new count."""
    if num_classes == arch.classes:
        return arch
    decoder = None
    if arch.decoder is not None:
        decoder = [num_classes if width == arch.classes else width for width in arch.decoder]
    return Arch.create(
        [[block.to_json() for block in stage] for stage in arch.stages],
        block=list(arch.kinds),
        stem=arch.stem,
        decoder=decoder,
        classes=num_classes,
        output_stride=arch.output_stride,
    )


def _looks_like_arch(text: str) -> bool:
    """Whether a failed name was meant as an architecture (then its parse error is the useful one)."""
    text = text.strip()
    return text.startswith("{") or text.endswith(".json") or "_" in text


def build_model(arch: Arch) -> nn.Module:
    """A randomly initialised DFNet (backbone) or DFSeg (with decoder) for ``arch``."""
    if arch.is_segmentation:
        from .seg import DFSeg

        return DFSeg(arch)
    from .dfnet import DFNet

    return DFNet(arch)


def create_model(
    name_or_arch: Union[str, Arch],
    num_classes: Optional[int] = None,
    pretrained_weights: Optional[str] = None,
) -> nn.Module:
    """Build a model by preset name, reference-model name, short string, JSON, .json path or ``Arch``.

    ``pretrained_weights`` (safetensors or .pt/.pth) is loaded with full checking
    (``dfseg.weights.load_weights``).  The model is returned in eval mode.
    """
    if isinstance(name_or_arch, Arch):
        arch: Optional[Arch] = name_or_arch
    else:
        references = _reference_models()
        if name_or_arch in references and name_or_arch not in PRESETS:
            arch = None
            model = references[name_or_arch](num_classes=1000 if num_classes is None else num_classes)
        else:
            try:
                arch = Arch.parse(name_or_arch)
            except ArchError as exc:
                if _looks_like_arch(name_or_arch):
                    raise
                raise UserError(
                    "unknown model {!r}; use one of {} or an architecture (short string such as "
                    "64x3_128x3_256x3+512x1, JSON, or a .json file)".format(name_or_arch, ", ".join(list_models()))
                ) from exc
    if arch is not None:
        if num_classes is not None:
            arch = with_classes(arch, num_classes)
        model = build_model(arch)
    if pretrained_weights is not None:
        from ..weights import load_weights

        load_weights(model, pretrained_weights)
    return model.eval()
