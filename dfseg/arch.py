"""Architecture encoding: the one description of a DF network that every part of dfseg shares.

An architecture is a fixed stem (two stride-2 convolutions), three residual stages (the paper's
stages 3, 4 and 5, each starting with a stride-2 block) and either an ImageNet classifier or, for
DF-Seg, a decoder whose width controllers are set by ``[C3, C4, C5]``.

Canonical JSON (what ``Arch.to_json`` writes and ``Arch.from_json`` reads)::

    {"stem": [32, 64],
     "stages": [[64, 64, 64], [128, 128, 128], [256, 256, 256, 512]],
     "block": "basic"}

A bottleneck stage lists each block as ``[inner, out]`` (1x1 to inner, 3x3 at inner, 1x1 to out);
``"block"`` is one kind for every stage or a list of three kinds.  DF-Seg adds ``"decoder"`` and
``"classes"``, and ``"output_stride": 8`` marks the d8 variant (prediction at 1/8 resolution).

The short form, for tables and logs, run-length encodes each stage and joins stages with ``_``;
a bottleneck block is ``INNERbOUT``::

    64x3_128x3_256x3+512x1                     DF1
    64x2+128x1_128b512x10+256b1024x1_...       DF2A
    64x3_128x3_256x3+512x1-wc19.32.128         DF1-Seg

This module is imported on the device (Python 3.6): keep it free of torch and of newer syntax.
Over 400 lines: ``Arch`` with its JSON and short-form codecs (its own methods) and the presets is the one description.
"""

import json
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .errors import UserError
from .fileio import parse_json, read_json
from .sizes import is_decimal

BASIC = "basic"
BOTTLENECK = "bottleneck"
BLOCK_KINDS = (BASIC, BOTTLENECK)

DEFAULT_STEM = (32, 64)
NUM_STAGES = 3
# Widths an architecture may use unless a caller (e.g. a search space) narrows them.
ALLOWED_WIDTHS = (16, 32, 64, 128, 256, 512, 1024, 2048)
# Bounds far beyond any real network, checked before anything is built: a typo such as 64x999999999
# or "classes": 2000000000 is an error, not an allocation of gigabytes.
MAX_BLOCKS_PER_STAGE = 256
MAX_CLASSES = 100000
# The paper's width-controller choices besides K (the number of classes).
DECODER_WIDTHS = (32, 64, 128, 256, 512)
IMAGENET_CLASSES = 1000
CITYSCAPES_CLASSES = 19
OUTPUT_STRIDES = (1, 8)


class ArchError(UserError):
    """An architecture description is invalid; the message names the field and the fix."""


class Block(NamedTuple):
    """One residual block: its kind, output width and (bottleneck only) inner width."""

    kind: str
    width: int
    inner: Optional[int] = None

    def short(self) -> str:
        if self.kind == BOTTLENECK:
            return "{}b{}".format(self.inner, self.width)
        return str(self.width)

    def to_json(self) -> Any:
        if self.kind == BOTTLENECK:
            return [self.inner, self.width]
        return self.width


class Arch(NamedTuple):
    """A validated, hashable architecture.  Build with ``Arch.create`` or ``Arch.from_json``."""

    stem: Tuple[int, int]
    stages: Tuple[Tuple[Block, ...], ...]
    decoder: Optional[Tuple[int, int, int]] = None
    classes: int = IMAGENET_CLASSES
    output_stride: int = 1

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        stages: Sequence[Sequence[Any]],
        block: Any = BASIC,
        stem: Sequence[int] = DEFAULT_STEM,
        decoder: Optional[Sequence[int]] = None,
        classes: Optional[int] = None,
        output_stride: int = 1,
        allowed_widths: Iterable[int] = ALLOWED_WIDTHS,
    ) -> "Arch":
        """Build and validate an architecture from plain Python values (the JSON fields)."""
        kinds = _stage_kinds(block)
        if not isinstance(stages, (list, tuple)) or len(stages) != NUM_STAGES:
            raise ArchError(
                "stages: expected a list of {} stages (paper stages 3, 4, 5), got {!r}".format(
                    NUM_STAGES, stages
                )
            )
        for s, stage in enumerate(stages):
            if isinstance(stage, (list, tuple)) and len(stage) > MAX_BLOCKS_PER_STAGE:
                raise ArchError("stages[{}]: {} blocks is more than {} in one stage; check the counts".format(
                    s, len(stage), MAX_BLOCKS_PER_STAGE))
        parsed = tuple(
            tuple(_parse_block(entry, kinds[s], "stages[{}][{}]".format(s, j)) for j, entry in enumerate(_as_list(stage, "stages[{}]".format(s))))
            for s, stage in enumerate(stages)
        )
        if classes is None:
            classes = CITYSCAPES_CLASSES if decoder is not None else IMAGENET_CLASSES
        arch = cls(
            stem=_int_tuple(stem, 2, "stem"),
            stages=parsed,
            decoder=None if decoder is None else _int_tuple(decoder, 3, "decoder"),
            classes=_classes(classes),
            output_stride=output_stride,
        )
        arch.validate(allowed_widths)
        return arch

    @classmethod
    def from_json(cls, data: Any, allowed_widths: Iterable[int] = ALLOWED_WIDTHS) -> "Arch":
        """Parse the canonical JSON object (a dict, or a JSON string holding one)."""
        if isinstance(data, str):
            data = parse_json(data, "architecture JSON", ArchError)
        if not isinstance(data, dict):
            raise ArchError("architecture JSON must be an object, got {!r}".format(data))
        known = {"stem", "stages", "block", "decoder", "classes", "output_stride"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchError(
                "architecture JSON has unknown field(s) {}; known fields: {}".format(
                    ", ".join(unknown), ", ".join(sorted(known))
                )
            )
        if "stages" not in data:
            raise ArchError('architecture JSON needs "stages": three lists of block widths')
        return cls.create(
            stages=data["stages"],
            block=data.get("block", BASIC),
            stem=data.get("stem", DEFAULT_STEM),
            decoder=data.get("decoder"),
            classes=data.get("classes"),
            output_stride=data.get("output_stride", 1),
            allowed_widths=allowed_widths,
        )

    @classmethod
    def load(cls, path: str) -> "Arch":
        """Read an architecture from a JSON file; errors name the file."""
        data = read_json(path, "architecture file", error=ArchError)
        try:
            return cls.from_json(data)
        except ArchError as exc:
            raise ArchError("{}: {}".format(path, exc)) from None

    @classmethod
    def parse(cls, text: str) -> "Arch":
        """Accept a preset name, a short string, a JSON object or a path to a JSON file."""
        text = text.strip()
        if text in PRESETS:
            return PRESETS[text]
        if text.startswith("{"):
            return cls.from_json(text)
        if text.endswith(".json"):
            return cls.load(text)
        try:
            return cls.from_short(text)
        except ArchError as exc:
            raise ArchError(
                "{!r} is neither a preset ({}) nor a valid short form: {}".format(
                    text, ", ".join(PRESETS), exc
                )
            ) from None

    # ------------------------------------------------------------------ serialisation
    @property
    def is_segmentation(self) -> bool:
        return self.decoder is not None

    @property
    def kinds(self) -> Tuple[str, ...]:
        return tuple(stage[0].kind for stage in self.stages)

    def to_json(self) -> Dict[str, Any]:
        kinds = self.kinds
        out = {
            "stem": list(self.stem),
            "stages": [[block.to_json() for block in stage] for stage in self.stages],
            "block": kinds[0] if len(set(kinds)) == 1 else list(kinds),
        }  # type: Dict[str, Any]
        if self.decoder is not None:
            out["decoder"] = list(self.decoder)
        if self.decoder is not None or self.classes != IMAGENET_CLASSES:
            out["classes"] = self.classes
        if self.output_stride != 1:
            out["output_stride"] = self.output_stride
        return out

    def dumps(self) -> str:
        """Canonical JSON text: sorted keys, no spaces, so equal architectures give equal text."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def short(self) -> str:
        parts = []
        if self.stem != DEFAULT_STEM:
            parts.append("s{}.{}".format(*self.stem))
        parts.append("_".join(_run_length(stage) for stage in self.stages))
        if self.decoder is not None:
            parts.append("wc{}.{}.{}".format(*self.decoder))
        default_classes = CITYSCAPES_CLASSES if self.decoder is not None else IMAGENET_CLASSES
        if self.classes != default_classes:
            parts.append("k{}".format(self.classes))
        if self.output_stride != 1:
            parts.append("d{}".format(self.output_stride))
        return "-".join(parts)

    @classmethod
    def from_short(cls, text: str) -> "Arch":
        stem = DEFAULT_STEM  # type: Sequence[int]
        decoder = None
        classes = None
        output_stride = 1
        body = None
        for token in text.split("-"):
            if token.startswith("s") and body is None:
                stem = _dotted(token[1:], 2, token)
            elif token.startswith("wc"):
                decoder = _dotted(token[2:], 3, token)
            elif token.startswith("k"):
                classes = _positive_int(_token_int(token[1:], token), token)
            elif token.startswith("d") and is_decimal(token[1:]):
                output_stride = int(token[1:])
            elif body is None:
                body = token
            else:
                raise ArchError("short form {!r}: unexpected part {!r}".format(text, token))
        if body is None:
            raise ArchError("short form {!r} has no stages (e.g. 64x3_128x3_256x3+512x1)".format(text))
        stage_texts = body.split("_")
        if len(stage_texts) != NUM_STAGES:
            raise ArchError(
                "short form {!r}: expected {} stages joined by '_', got {}".format(text, NUM_STAGES, len(stage_texts))
            )
        stages = []
        kinds = []
        for stage_text in stage_texts:
            entries, kind = _parse_run_length(stage_text)
            stages.append(entries)
            kinds.append(kind)
        return cls.create(stages, kinds, stem, decoder, classes, output_stride)

    # ------------------------------------------------------------------ validation
    def validate(self, allowed_widths: Iterable[int] = ALLOWED_WIDTHS) -> None:
        """Raise ArchError naming the first offending field."""
        allowed = tuple(sorted(set(allowed_widths)))
        for i, width in enumerate(self.stem):
            if width <= 0:
                raise ArchError("stem[{}]: width must be positive, got {}".format(i, width))
        previous = self.stem[1]
        previous_name = "stem[1]"
        for s, stage in enumerate(self.stages):
            if not stage:
                raise ArchError("stages[{}]: a stage needs at least one block".format(s))
            if len({block.kind for block in stage}) != 1:
                raise ArchError("stages[{}]: all blocks of a stage must be of one kind".format(s))
            for j, block in enumerate(stage):
                name = "stages[{}][{}]".format(s, j)
                for label, width in (("width", block.width), ("inner width", block.inner)):
                    if width is not None and width not in allowed:
                        raise ArchError(
                            "{}: {} {} is not allowed (allowed: {})".format(
                                name, label, width, ", ".join(map(str, allowed))
                            )
                        )
                if block.width < previous:
                    raise ArchError(
                        "{}: width {} is narrower than {} ({}); widths must not decrease "
                        "through the network".format(name, block.width, previous_name, previous)
                    )
                previous, previous_name = block.width, name
        if self.output_stride not in OUTPUT_STRIDES:
            raise ArchError(
                "output_stride: {} is not supported (use 1 for full resolution or 8 for d8)".format(
                    self.output_stride
                )
            )
        if self.decoder is None:
            if self.output_stride != 1:
                raise ArchError("output_stride: only segmentation models (with a decoder) have a d8 variant")
            return
        choices = (self.classes,) + DECODER_WIDTHS
        for i, width in enumerate(self.decoder):
            if width not in choices:
                raise ArchError(
                    "decoder[{}]: width-controller width {} is not allowed (allowed: K={} or {})".format(
                        i, width, self.classes, ", ".join(map(str, DECODER_WIDTHS))
                    )
                )

    # ------------------------------------------------------------------ derived facts
    @property
    def depth(self) -> int:
        """Weighted layers on the main path: stem convs + convs per block + the classifier FC.

        This is the paper's Table 2 depth (DF1 23, DF2 43, DF2A 60).
        """
        per_block = {BASIC: 2, BOTTLENECK: 3}
        return len(self.stem) + sum(per_block[b.kind] for stage in self.stages for b in stage) + 1

    def backbone(self) -> "Arch":
        """The classification backbone of this architecture (decoder removed)."""
        return self._replace(decoder=None, classes=IMAGENET_CLASSES, output_stride=1)

    def with_decoder(self, decoder: Sequence[int], classes: int = CITYSCAPES_CLASSES) -> "Arch":
        arch = self._replace(decoder=_int_tuple(decoder, 3, "decoder"), classes=classes, output_stride=1)
        arch.validate()
        return arch


# ---------------------------------------------------------------------- helpers
def _as_list(value: Any, name: str) -> List[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArchError("{}: expected a list of blocks, got {!r}".format(name, value))
    return list(value)


def _to_int(value: Any, name: str) -> int:
    """A JSON field's (or a caller's) integer.  A string is refused even when it holds digits: JSON that
    quotes a number was written by hand or by another tool, and guessing what it meant hides the mistake."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and is_decimal(value):
        raise ArchError("{}: expected an integer, got the string {!r}; write the number without quotes".format(
            name, value))
    raise ArchError("{}: expected an integer, got {!r}".format(name, value))


def _token_int(text: str, name: str) -> int:
    """An integer written in the short form (``k19``, ``wc19.32.32``, ``64x2``)."""
    if is_decimal(text):
        return int(text)
    raise ArchError("{}: expected an integer, got {!r}".format(name, text))


def _classes(value: Any) -> int:
    classes = _positive_int(value, "classes")
    if classes > MAX_CLASSES:
        raise ArchError("classes: {} is more than {}; check the value".format(classes, MAX_CLASSES))
    return classes


def _positive_int(value: Any, name: str) -> int:
    number = _to_int(value, name)
    if number <= 0:
        raise ArchError("{}: must be positive, got {}".format(name, number))
    return number


def _int_tuple(value: Any, length: int, name: str) -> Tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ArchError("{}: expected {} integers, got {!r}".format(name, length, value))
    return tuple(_positive_int(v, "{}[{}]".format(name, i)) for i, v in enumerate(value))


def _stage_kinds(block: Any) -> Tuple[str, ...]:
    kinds = (block,) * NUM_STAGES if isinstance(block, str) else block
    if not isinstance(kinds, (list, tuple)) or len(kinds) != NUM_STAGES:
        raise ArchError(
            'block: expected "basic", "bottleneck" or a list of {} such kinds, got {!r}'.format(NUM_STAGES, block)
        )
    for kind in kinds:
        if kind not in BLOCK_KINDS:
            raise ArchError('block: unknown kind {!r}; use "basic" or "bottleneck"'.format(kind))
    return tuple(kinds)


def _parse_block(entry: Any, kind: str, name: str) -> Block:
    if kind == BASIC:
        if isinstance(entry, (list, tuple)):
            raise ArchError(
                "{}: {!r} looks like a bottleneck [inner, out] pair but the stage's block kind is "
                '"basic"; set "block" for this stage to "bottleneck"'.format(name, entry)
            )
        return Block(BASIC, _positive_int(entry, name))
    if isinstance(entry, (list, tuple)):
        if len(entry) != 2:
            raise ArchError("{}: a bottleneck block is [inner, out], got {!r}".format(name, entry))
        return Block(BOTTLENECK, _positive_int(entry[1], name), _positive_int(entry[0], name))
    width = _positive_int(entry, name)
    # A bare width in a bottleneck stage means the ResNet expansion of 4.
    return Block(BOTTLENECK, width, max(1, width // 4))


def _run_length(stage: Sequence[Block]) -> str:
    runs = []  # type: List[List[Any]]
    for block in stage:
        if runs and runs[-1][0] == block:
            runs[-1][1] += 1
        else:
            runs.append([block, 1])
    return "+".join("{}x{}".format(block.short(), count) for block, count in runs)


def _parse_run_length(text: str) -> Tuple[List[Any], str]:
    entries = []  # type: List[Any]
    kinds = set()
    for run in text.split("+"):
        head, sep, count = run.partition("x")
        if not sep or not is_decimal(count) or int(count) <= 0:
            raise ArchError("stage {!r}: each run is WIDTHxCOUNT (e.g. 128x3), got {!r}".format(text, run))
        if len(entries) + int(count) > MAX_BLOCKS_PER_STAGE:
            raise ArchError("stage {!r}: more than {} blocks in one stage; check the counts".format(
                text, MAX_BLOCKS_PER_STAGE))
        if "b" in head:
            inner, _, out = head.partition("b")
            entry = [_token_int(inner, run), _token_int(out, run)]  # type: Any
            kinds.add(BOTTLENECK)
        else:
            entry = _token_int(head, run)
            kinds.add(BASIC)
        entries.extend([entry] * int(count))
    if len(kinds) != 1:
        raise ArchError("stage {!r}: all blocks of a stage must be of one kind".format(text))
    return entries, kinds.pop()


def _dotted(text: str, length: int, token: str) -> List[int]:
    values = text.split(".")
    if len(values) != length:
        raise ArchError("{!r}: expected {} numbers joined by '.'".format(token, length))
    return [_token_int(v, token) for v in values]


# ---------------------------------------------------------------------- presets
_DF1_STAGES = [[64] * 3, [128] * 3, [256] * 3 + [512]]
_DF2_STAGES = [[64, 64, 128], [128] * 10 + [256], [256] * 4 + [512] * 2]
_DF2A_STAGES = [
    [64, 64, 128],
    [[128, 512]] * 10 + [[256, 1024]],
    [[256, 1024]] * 4 + [[512, 1024]] * 2,
]
_DFLITE_STAGES = [[64, 64], [128, 128], [256, 512]]

PRESETS = {
    "df1": Arch.create(_DF1_STAGES),
    "df2": Arch.create(_DF2_STAGES),
    "df2a": Arch.create(_DF2A_STAGES, block=[BASIC, BOTTLENECK, BOTTLENECK]),
    "df1-seg": Arch.create(_DF1_STAGES, decoder=[19, 32, 128]),
    "df2-seg1": Arch.create(_DF2_STAGES, decoder=[19, 19, 32]),
    "df2-seg2": Arch.create(_DF2_STAGES, decoder=[19, 256, 512]),
    "dflite-seg": Arch.create(_DFLITE_STAGES, decoder=[32, 32, 512]),
    "df1-seg-d8": Arch.create(_DF1_STAGES, decoder=[19, 32, 128], output_stride=8),
}  # type: Dict[str, Arch]

# The reference backbones of the paper's Table 1, by name: the one list, readable without torch.  Their
# builders (host only) are ``dfseg.models.table1.REFERENCE_MODELS``, one per name here.
REFERENCE_MODEL_NAMES = ("resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2", "googlenet")

BACKBONE_PRESETS = tuple(name for name, arch in PRESETS.items() if not arch.is_segmentation)
SEGMENTATION_PRESETS = tuple(name for name, arch in PRESETS.items() if arch.is_segmentation)


def get_preset(name: str) -> Arch:
    try:
        return PRESETS[name]
    except KeyError:
        raise ArchError("unknown model {!r}; presets: {}".format(name, ", ".join(PRESETS))) from None


def preset_name(arch: Arch) -> Optional[str]:
    """The preset's name when ``arch`` is one, else None (for friendlier tables and logs)."""
    for name, preset in PRESETS.items():
        if preset == arch:
            return name
    return None
