"""The architecture search spaces of the paper: the one definition shared by the search
(``dfseg-search``) and the latency-table measurement (``dfseg-bench --table``).

``SearchSpace`` is the backbone space S (section 3.1/3.2): the fixed stem, then stages 3, 4 and 5
with a configurable number of blocks each, every block width taken from ``widths`` and widths
never decreasing through the network (the paper's restriction, also enforced by ``Arch``).  The
latency window [t_min, t_max] (ms, from a latency table) turns S into S^; applying it needs a table
and happens in ``dfseg.search.enumerate``.  By default the space ends in the ImageNet classifier;
giving ``decoder=[C3, C4, C5]`` searches backbones of a segmentation network with that decoder.

``DecoderSpace`` is the decoder space of section 3.5: for a fixed backbone, every width-controller
setting [C3, C4, C5] in {K, 32, 64, 128, 256, 512}^3.

Both spaces define ``order_key(arch)``, the vector on which the partial order "x is shallower and
narrower than y" is the elementwise order (see ``dfseg.search.order`` for the definition and its
proof), and ``all_parts()``, every distinct part any member can contain at the space's input size,
which is exactly what a latency table must hold for the search to run.

Device side (dfseg-bench imports it): Python 3.6, no torch, no numpy.
"""

import itertools
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .arch import (
    BASIC,
    BLOCK_KINDS,
    BOTTLENECK,
    CITYSCAPES_CLASSES,
    DECODER_WIDTHS,
    DEFAULT_STEM,
    IMAGENET_CLASSES,
    MAX_BLOCKS_PER_STAGE,
    NUM_STAGES,
    Arch,
    ArchError,
    Block,
)
from .errors import UserError
from .parts import Part, backbone_parts, network_parts
from .sizes import Size, is_decimal

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)
# Covers every released backbone: DF1 (3, 3, 4), DF2 (3, 11, 6), DFlite (2, 2, 2), with room for
# deeper stage-3 and stage-5 variants.  Stage 4 gets the most blocks because DF2 puts 11 there.
DEFAULT_BLOCKS = ((1, 6), (1, 12), (1, 8))
DEFAULT_INPUT = Size(224, 224)
DEFAULT_DECODER_INPUT = Size(640, 360)
# A bottleneck block of output width w has inner width w // 4 (the ResNet expansion; DF2A's
# 128b512 and 256b1024 follow it).
BOTTLENECK_EXPANSION = 4


class SpaceError(UserError):
    """A search-space setting is invalid; the message names the option and the fix."""


class SearchSpace:
    """The backbone space S: stem + three stages of residual blocks (+ classifier or a fixed decoder)."""

    def __init__(
        self,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        blocks_per_stage: Sequence[Sequence[int]] = DEFAULT_BLOCKS,
        block: Any = BASIC,
        input_size: Size = DEFAULT_INPUT,
        t_min: Optional[float] = None,
        t_max: Optional[float] = None,
        stem: Sequence[int] = DEFAULT_STEM,
        decoder: Optional[Sequence[int]] = None,
        classes: Optional[int] = None,
    ) -> None:
        self.stem = tuple(int(w) for w in stem)  # type: Tuple[int, ...]
        if len(self.stem) != 2 or min(self.stem) <= 0:
            raise SpaceError("stem: expected two positive widths (e.g. 32,64), got {!r}".format(stem))
        widths = tuple(sorted(set(int(w) for w in widths)))
        if not widths:
            raise SpaceError("widths: give at least one block width (e.g. 64,128,256,512,1024)")
        too_narrow = [w for w in widths if w < self.stem[1]]
        if too_narrow:
            raise SpaceError(
                "widths: {} narrower than the stem's {} channels; widths never decrease through the network, "
                "so drop them or narrow the stem".format(",".join(map(str, too_narrow)), self.stem[1])
            )
        self.widths = widths  # type: Tuple[int, ...]
        if len(blocks_per_stage) != NUM_STAGES:
            raise SpaceError("blocks: expected {} ranges (stages 3, 4, 5), got {!r}".format(NUM_STAGES, blocks_per_stage))
        ranges = []
        for s, pair in enumerate(blocks_per_stage):
            low, high = (int(pair[0]), int(pair[1])) if len(pair) == 2 else (-1, -1)
            if low < 1 or high < low:
                raise SpaceError(
                    "blocks: stage {} range {!r} must be MIN-MAX with 1 <= MIN <= MAX".format(s + 3, pair)
                )
            if high > MAX_BLOCKS_PER_STAGE:  # no architecture has more; the enumeration would exhaust memory first
                raise SpaceError("blocks: stage {} range {!r}: at most {} blocks a stage".format(
                    s + 3, pair, MAX_BLOCKS_PER_STAGE))
            ranges.append((low, high))
        self.blocks_per_stage = tuple(ranges)  # type: Tuple[Tuple[int, int], ...]
        kinds = (block,) * NUM_STAGES if isinstance(block, str) else tuple(block)
        if len(kinds) != NUM_STAGES or any(kind not in BLOCK_KINDS for kind in kinds):
            raise SpaceError('block: use "basic", "bottleneck" or three kinds (one per stage), got {!r}'.format(block))
        self.kinds = kinds  # type: Tuple[str, ...]
        if BOTTLENECK in kinds and min(widths) < BOTTLENECK_EXPANSION:
            raise SpaceError("widths: bottleneck blocks need widths of at least {}".format(BOTTLENECK_EXPANSION))
        self.input_size = input_size
        if t_min is not None and t_max is not None and t_min > t_max:
            raise SpaceError("latency window: t_min {} ms is above t_max {} ms".format(t_min, t_max))
        self.t_min = None if t_min is None else float(t_min)
        self.t_max = None if t_max is None else float(t_max)
        self.decoder = None if decoder is None else tuple(int(c) for c in decoder)
        if classes is None:
            classes = CITYSCAPES_CLASSES if decoder is not None else IMAGENET_CLASSES
        self.classes = int(classes)
        if self.decoder is not None:
            self._probe([[widths[0]], [widths[0]], [widths[0]]])  # validates the decoder setting early

    # ------------------------------------------------------------------ blocks and architectures
    def block(self, stage: int, width: int) -> Block:
        """The block of output ``width`` in ``stage`` (0, 1, 2 = paper stages 3, 4, 5)."""
        if self.kinds[stage] == BOTTLENECK:
            return Block(BOTTLENECK, width, width // BOTTLENECK_EXPANSION)
        return Block(BASIC, width)

    def make(self, stage_widths: Sequence[Sequence[int]]) -> Arch:
        """The member of S with these block widths per stage (not checked against the ranges)."""
        stages = [[self.block(s, w).to_json() for w in widths] for s, widths in enumerate(stage_widths)]
        return Arch.create(stages, block=list(self.kinds), stem=self.stem, decoder=self.decoder, classes=self.classes)

    def _probe(self, stage_widths: Sequence[Sequence[int]]) -> Arch:
        try:
            return self.make(stage_widths)
        except ArchError as exc:
            raise SpaceError("search space: {}".format(exc)) from None

    def contains(self, arch: Arch) -> bool:
        """Whether ``arch`` belongs to S (structure only; the latency window needs a table)."""
        if arch.stem != self.stem or arch.decoder != self.decoder or arch.classes != self.classes:
            return False
        if arch.output_stride != 1:
            return False
        for s, stage in enumerate(arch.stages):
            low, high = self.blocks_per_stage[s]
            if not low <= len(stage) <= high:
                return False
            for block in stage:
                if block.width not in self.widths or block != self.block(s, block.width):
                    return False
        try:
            arch.validate()
        except ArchError:
            return False
        return True

    def stage_widths(self, arch: Arch) -> List[List[int]]:
        return [[block.width for block in stage] for stage in arch.stages]

    def order_key(self, arch: Arch) -> Tuple[int, ...]:
        """Right-aligned, zero-padded width codes (code = 1 + index in ``widths``), stage by stage.

        x is shallower and narrower than y exactly when order_key(x) <= order_key(y) elementwise
        (``dfseg.search.order``).
        """
        key = []  # type: List[int]
        for s, stage in enumerate(arch.stages):
            high = self.blocks_per_stage[s][1]
            codes = [self.widths.index(block.width) + 1 for block in stage]
            key.extend([0] * (high - len(codes)) + codes)
        return tuple(key)

    def from_order_key(self, key: Sequence[int]) -> Arch:
        stages, start = [], 0
        for low_high in self.blocks_per_stage:
            high = low_high[1]
            stages.append([self.widths[c - 1] for c in key[start:start + high] if c])
            start += high
        return self.make(stages)

    @property
    def key_length(self) -> int:
        return sum(high for _, high in self.blocks_per_stage)

    def entry_widths(self, stage: int) -> Tuple[int, ...]:
        """Widths a stage's first block can receive: the stem for stage 3, else any allowed width."""
        return (self.stem[1],) if stage == 0 else self.widths

    def stage_sequences(self, stage: int, entry: int) -> Iterator[Tuple[int, ...]]:
        """Every non-decreasing width sequence of ``stage`` that follows a block of width ``entry``."""
        low, high = self.blocks_per_stage[stage]
        choices = [w for w in self.widths if w >= entry]
        for count in range(low, high + 1):
            yield from itertools.combinations_with_replacement(choices, count)

    # ------------------------------------------------------------------ parts (what a table must hold)
    def block_part(self, stage: int, first: bool, c_in: int, c_out: int) -> Part:
        """The part of a block of ``stage``: its first (stride-2) block fed ``c_in`` channels, or a
        later block going from ``c_in`` to ``c_out``.  Shapes come from ``dfseg.parts``."""
        stages = [[c_in]] * stage + ([[c_out]] if first else [[c_in, c_out]])
        stages += [[c_out]] * (NUM_STAGES - 1 - stage)
        parts = backbone_parts(self._probe(stages), self.input_size.height, self.input_size.width)
        name = "stage{}.{}".format(stage + 3, 0 if first else 1)
        return [part for part in parts if part.name == name][0]

    def stem_parts(self) -> List[Part]:
        probe = self._probe([[self.widths[0]]] * NUM_STAGES)
        return [p for p in network_parts(probe, self.input_size.height, self.input_size.width) if p.kind == "stem"]

    def head_parts(self, last_widths: Sequence[int]) -> List[Part]:
        """Classifier or decoder parts of a member whose stages end in widths ``last_widths``."""
        probe = self._probe([[w] for w in last_widths])
        size = self.input_size
        count = len(backbone_parts(probe, size.height, size.width))
        return network_parts(probe, size.height, size.width)[count:]

    def last_width_triples(self) -> List[Tuple[int, int, int]]:
        """Possible (last width of stage 3, 4, 5): non-decreasing triples of allowed widths."""
        return [t for t in itertools.combinations_with_replacement(self.widths, NUM_STAGES)]

    def all_parts(self) -> List[Part]:
        """Every distinct part a member of S can contain at ``input_size`` (sorted by key)."""
        found = {}  # type: Dict[str, Part]
        for part in self.stem_parts():
            found[part.key] = part
        for stage in range(NUM_STAGES):
            high = self.blocks_per_stage[stage][1]
            for entry in self.entry_widths(stage):
                for width in self.widths:
                    if width < entry:
                        continue
                    part = self.block_part(stage, True, entry, width)
                    found[part.key] = part
            if high >= 2:
                for c_in, c_out in itertools.combinations_with_replacement(self.widths, 2):
                    part = self.block_part(stage, False, c_in, c_out)
                    found[part.key] = part
        for triple in self.last_width_triples():
            for part in self.head_parts(triple):
                found[part.key] = part
        return [found[key] for key in sorted(found)]

    # ------------------------------------------------------------------ description and CLI
    def size_without_window(self) -> int:
        """|S| (ignoring latency): non-decreasing width sequences over all block counts."""
        total = 0
        ranges = [range(low, high + 1) for low, high in self.blocks_per_stage]
        for counts in itertools.product(*ranges):
            total += multiset_count(len(self.widths), sum(counts))
        return total

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": "backbone",
            "widths": list(self.widths),
            "blocks_per_stage": [list(pair) for pair in self.blocks_per_stage],
            "block": list(self.kinds),
            "input_size": str(self.input_size),
            "t_min": self.t_min,
            "t_max": self.t_max,
            "stem": list(self.stem),
            "decoder": None if self.decoder is None else list(self.decoder),
            "classes": self.classes,
        }

    def with_widths(self, widths: Sequence[int]) -> "SearchSpace":
        """This space with other block widths."""
        return SearchSpace(widths, self.blocks_per_stage, self.kinds, self.input_size, self.t_min, self.t_max,
                           self.stem, self.decoder, self.classes)

    def to_argv(self) -> List[str]:
        """The command-line options that rebuild this space (its latency window left out)."""
        argv = [
            "--widths", ",".join(map(str, self.widths)),
            "--blocks", ",".join("{}-{}".format(low, high) for low, high in self.blocks_per_stage),
            "--block", self.kinds[0] if len(set(self.kinds)) == 1 else ",".join(self.kinds),
            "--size", str(self.input_size),
        ]
        if self.stem != DEFAULT_STEM:
            argv += ["--stem", ",".join(map(str, self.stem))]
        if self.decoder is not None:
            argv += ["--decoder", ",".join(map(str, self.decoder))]
        if self.classes != (CITYSCAPES_CLASSES if self.decoder is not None else IMAGENET_CLASSES):
            argv += ["--classes", str(self.classes)]
        return argv

    def table_argv(self) -> List[str]:
        """The ``dfseg-bench --table`` options that measure exactly this space's parts."""
        return ["--space-only"] + self.to_argv()

    def __repr__(self) -> str:
        return "SearchSpace({})".format(self.to_json())


class DecoderSpace:
    """Width-controller settings [C3, C4, C5] in ``choices``^3 for a fixed backbone (section 3.5)."""

    def __init__(
        self,
        backbone: Arch,
        classes: int = CITYSCAPES_CLASSES,
        choices: Optional[Sequence[int]] = None,
        input_size: Size = DEFAULT_DECODER_INPUT,
        t_min: Optional[float] = None,
        t_max: Optional[float] = None,
    ) -> None:
        self.backbone = backbone.backbone()
        self.classes = int(classes)
        if choices is None:
            choices = (self.classes,) + DECODER_WIDTHS
        self.choices = tuple(sorted(set(int(c) for c in choices)))  # type: Tuple[int, ...]
        allowed = set((self.classes,) + DECODER_WIDTHS)
        bad = [c for c in self.choices if c not in allowed]
        if bad:
            raise SpaceError("decoder choices: {} not allowed (use K={} or {})".format(
                bad, self.classes, ", ".join(map(str, DECODER_WIDTHS))))
        self.input_size = input_size
        if t_min is not None and t_max is not None and t_min > t_max:
            raise SpaceError("latency window: t_min {} ms is above t_max {} ms".format(t_min, t_max))
        self.t_min = None if t_min is None else float(t_min)
        self.t_max = None if t_max is None else float(t_max)

    def settings(self) -> List[Tuple[int, int, int]]:
        return list(itertools.product(self.choices, repeat=NUM_STAGES))

    def make(self, setting: Sequence[int]) -> Arch:
        return self.backbone.with_decoder(setting, classes=self.classes)

    def contains(self, arch: Arch) -> bool:
        return (arch.decoder is not None and arch.backbone() == self.backbone and arch.classes == self.classes
                and arch.output_stride == 1 and all(c in self.choices for c in arch.decoder))

    def order_key(self, arch: Arch) -> Tuple[int, ...]:
        """Rank of each width controller among ``choices``: narrower decoders precede wider ones."""
        assert arch.decoder is not None
        return tuple(self.choices.index(c) + 1 for c in arch.decoder)

    @property
    def key_length(self) -> int:
        return NUM_STAGES

    def all_parts(self) -> List[Part]:
        found = {}  # type: Dict[str, Part]
        size = self.input_size
        for setting in self.settings():
            for part in network_parts(self.make(setting), size.height, size.width):
                found[part.key] = part
        return [found[key] for key in sorted(found)]

    def _choices_argv(self) -> List[str]:
        if self.choices == DecoderSpace(self.backbone, self.classes).choices:
            return []
        return ["--choices", ",".join(map(str, self.choices))]

    def to_argv(self) -> List[str]:
        """The ``dfseg-search`` options that rebuild this space (its latency window left out)."""
        return (["--decoder-search", "--classes", str(self.classes), "--size", str(self.input_size)]
                + self._choices_argv() + ["--backbone", self.backbone.short()])

    def table_argv(self) -> List[str]:
        """The ``dfseg-bench --table`` options that measure exactly this space's parts: the narrowest member
        names the backbone and the classes, --decoder-space adds every setting."""
        model = self.make((min(self.choices),) * NUM_STAGES).short()
        return ["--models", model, "--sizes", str(self.input_size), "--decoder-space"] + self._choices_argv()

    def to_json(self) -> Dict[str, Any]:
        return {"kind": "decoder", "backbone": self.backbone.short(), "classes": self.classes,
                "choices": list(self.choices), "input_size": str(self.input_size),
                "t_min": self.t_min, "t_max": self.t_max}


# ---------------------------------------------------------------------- helpers
def multiset_count(kinds: int, length: int) -> int:
    """Number of non-decreasing sequences of ``length`` over ``kinds`` values: C(length+kinds-1, kinds-1)."""
    numerator, denominator = 1, 1
    for i in range(1, kinds):
        numerator *= length + i
        denominator *= i
    return numerator // denominator


def parse_block_ranges(text: str) -> List[Tuple[int, int]]:
    """``"1-6,1-12,1-8"`` -> [(1, 6), (1, 12), (1, 8)]; a bare ``N`` means N-N."""
    ranges = []
    for item in str(text).split(","):
        low, sep, high = item.strip().partition("-")
        if not sep:
            high = low
        if not (is_decimal(low) and is_decimal(high)):
            raise SpaceError("--blocks: {!r} is not MIN-MAX (e.g. 1-6,1-12,1-8)".format(item))
        ranges.append((int(low), int(high)))
    if len(ranges) != NUM_STAGES:
        raise SpaceError("--blocks: expected {} ranges for stages 3,4,5, got {!r}".format(NUM_STAGES, text))
    return ranges
