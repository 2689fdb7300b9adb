"""What dfseg-bench measures by default: the models of the end-to-end benchmark, the block suite of a
latency table, and the random architectures that validate a table.

The block suite is the union of (a) every part of the chosen models at their sizes and (b) every
part a search space can produce (``dfseg.space.SearchSpace.all_parts``, the one definition of the
space), deduplicated by ``Part.key``.  The default is small enough to measure on a 2-core CPU in a
few minutes: the presets' parts (backbones at 224x224, DF-Seg at 360p) plus the default table space
(widths up to 512) at 224x224.  The space options (those of dfseg-search) and ``--decoder-space`` select
others.

Device side: Python 3.6, no torch.
"""

import random
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

from ..arch import BACKBONE_PRESETS, PRESETS, REFERENCE_MODEL_NAMES, SEGMENTATION_PRESETS, Arch
from ..parts import Part, network_parts
from ..sizes import Size, parse_size
from .model_files import CLASSIFIER_SIZE, ModelSpec, resolve_model

DEFAULT_SEG_SIZES = ("360p", "720p", "1080p")
DEFAULT_TABLE_SEG_SIZES = ("360p",)
# The table's default space: the presets' widths, so it measures in minutes on a CPU.
DEFAULT_TABLE_SPACE_WIDTHS = (64, 128, 256, 512)
def default_benchmark_models() -> List[str]:
    """All DF-Seg presets, the DF backbones and the reference backbones."""
    return list(SEGMENTATION_PRESETS) + list(BACKBONE_PRESETS) + list(REFERENCE_MODEL_NAMES)


def benchmark_specs(models: Sequence[str], sizes: Sequence[Size]) -> List[ModelSpec]:
    """One spec per (model, size); classification models once, at 224x224."""
    specs: List[ModelSpec] = []
    seen = set()
    for name in models:
        for size in sizes:
            spec = resolve_model(name, size)
            if spec.label not in seen:
                seen.add(spec.label)
                specs.append(spec)
    return specs


def parse_sizes(text: Optional[str], default: Sequence[str]) -> List[Size]:
    values = [v for v in (text.split(",") if text else default) if v.strip()]
    return [parse_size(v) for v in values]


def dedupe_parts(parts: Iterable[Part]) -> List[Part]:
    found: Dict[str, Part] = {}
    for part in parts:
        found.setdefault(part.key, part)
    return [found[key] for key in sorted(found)]


def spec_parts(specs: Iterable[ModelSpec]) -> List[Part]:
    """Parts of DF networks (reference models have no parts and are skipped)."""
    parts: List[Part] = []
    for spec in specs:
        if spec.arch is not None:
            parts.extend(network_parts(spec.arch, spec.size.height, spec.size.width))
    return parts


def table_space():
    """The backbone search space a default table covers (dfseg-bench --table with no space options)."""
    from ..space import SearchSpace

    return SearchSpace(widths=DEFAULT_TABLE_SPACE_WIDTHS, input_size=CLASSIFIER_SIZE)


def decoder_space_parts(networks: Sequence[Arch], sizes: Sequence[Size],
                        choices: Optional[Sequence[int]] = None) -> List[Part]:
    """Every decoder setting's parts for the segmentation networks' backbones (and classes) at the sizes."""
    from ..space import DecoderSpace

    parts: List[Part] = []
    for arch in networks:
        for size in sizes:
            parts.extend(DecoderSpace(arch.backbone(), classes=arch.classes, choices=choices,
                                      input_size=size).all_parts())
    return parts


def table_parts(models: Sequence[str], seg_sizes: Sequence[Size], space=None,
                decoder_space: bool = False, choices: Optional[Sequence[int]] = None) -> List[Part]:
    """The block suite: the models' parts at their sizes plus the space's parts (and decoder space)."""
    # The table never holds reference models; knowing their names must not need torch.
    specs = benchmark_specs([m for m in models if m not in REFERENCE_MODEL_NAMES], seg_sizes)
    parts = spec_parts(specs)
    if space is not None:
        parts.extend(space.all_parts())
    if decoder_space:
        networks = [s.arch for s in specs if s.arch is not None and s.arch.is_segmentation]
        parts.extend(decoder_space_parts(networks, seg_sizes, choices))
    return dedupe_parts(parts)


def random_architectures(space, count: int, seed: int = 0) -> List[Arch]:
    """``count`` distinct random members of ``space`` (uniform block counts, sorted random widths)."""
    rng = random.Random(seed)
    found: Dict[str, Arch] = {}
    attempts = 0
    while len(found) < count and attempts < count * 100:
        attempts += 1
        stages = []
        entry = space.stem[1]
        for low, high in space.blocks_per_stage:
            choices = [w for w in space.widths if w >= entry]
            widths = sorted(rng.choice(choices) for _ in range(rng.randint(low, high)))
            stages.append(widths)
            entry = widths[-1]
        arch = space.make(stages)
        found.setdefault(arch.short(), arch)
    return list(found.values())


CALIBRATION_SEED = 1009  # the calibration networks' seed: other members than a validation's
CALIBRATION_COUNT = 6


def calibration_specs(space, validation_random: int, validation_seed: int, count: int = CALIBRATION_COUNT,
                      models: Sequence[ModelSpec] = ()) -> List[ModelSpec]:
    """The networks on which a table run calibrates its in-network factors.

    Random members of ``space``, outside the random members that the validation with
    ``validation_random`` and ``validation_seed`` scores (``validation_specs``) first, others only where
    a small space has no more; and for each DF model of the table a depth variant (``depth_variant``:
    the same parts, other block counts), so that block kinds the space lacks (basic presets beside a
    bottleneck space) are calibrated too, never on a validated network.
    """
    found: List[ModelSpec] = []
    if space is not None:
        taken = {arch.short() for arch in random_architectures(space, validation_random, validation_seed)}
        drawn = random_architectures(space, count + len(taken), CALIBRATION_SEED)
        members = [a for a in drawn if a.short() not in taken] + [a for a in drawn if a.short() in taken]
        found = [ModelSpec(arch.short(), arch, space.input_size) for arch in members[:count]]
    seen = {spec.label for spec in found}
    for spec in models:
        variant = depth_variant(spec.arch) if spec.arch is not None else None
        if variant is not None and "{}@{}".format(variant.short(), spec.size) not in seen:
            seen.add("{}@{}".format(variant.short(), spec.size))
            found.append(ModelSpec(variant.short(), variant, spec.size))
    return found


class TableSuite(NamedTuple):
    """What one table run measures: the parts, the input sizes they are at, and the networks that calibrate
    its in-network model."""

    parts: List[Part]
    sizes: List[str]
    calibration: List[ModelSpec]


def table_suite(models: Sequence[str], seg_sizes: Sequence[Size], space, decoder_space: bool,
                choices: Optional[Sequence[int]], validation_random: int, validation_seed: int) -> TableSuite:
    """The parts of ``models`` at ``seg_sizes`` and of ``space`` (with ``decoder_space``: every decoder setting
    of the segmentation models), and the calibration networks: members of ``space`` that the validation
    with ``validation_random``/``validation_seed`` leaves out, and depth variants of the DF models."""
    parts = table_parts(models, seg_sizes, space, decoder_space, choices)
    specs = benchmark_specs([m for m in models if m not in REFERENCE_MODEL_NAMES], seg_sizes)
    networks = [s for s in specs if s.arch is not None]
    calibration = calibration_specs(space, validation_random, validation_seed, models=networks)
    sizes = sorted({str(s.size) for s in networks} | ({str(space.input_size)} if space is not None else set()))
    return TableSuite(parts, sizes, calibration)


def depth_variant(arch: Arch) -> Optional[Arch]:
    """``arch`` with one repeated block more in stages 3 and 5 and one less in stage 4 (where a stage repeats
    a block): its parts are ``arch``'s, its depth is not.  None when no stage repeats a block."""
    stages = []
    changed = False
    for index, stage in enumerate(arch.stages):
        blocks = list(stage)
        repeat = next((j for j in range(len(blocks) - 1, 0, -1) if blocks[j] == blocks[j - 1]), None)
        if repeat is not None:
            if index == 1:
                del blocks[repeat]
            else:
                blocks.insert(repeat, blocks[repeat])
            changed = True
        stages.append(tuple(blocks))
    return arch._replace(stages=tuple(stages)) if changed else None


def validation_specs(space, count: int, seed: int, seg_sizes: Sequence[Size],
                     presets: Optional[Sequence[str]] = None) -> List[ModelSpec]:
    """The presets (backbones at 224, DF-Seg at ``seg_sizes``) plus ``count`` random members of ``space``."""
    names = list(presets) if presets is not None else list(PRESETS)
    specs = benchmark_specs(names, seg_sizes)
    specs += [ModelSpec(arch.short(), arch, space.input_size) for arch in random_architectures(space, count, seed)]
    return specs
