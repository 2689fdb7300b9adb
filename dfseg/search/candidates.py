"""S^: every member of a search space whose table latency lies in [t_min, t_max], stored compactly.

Enumeration uses the table's additivity (section 3.2): Lat(x) = overhead + stem + stage 3 + stage 4
+ stage 5 + head, where a stage's cost depends only on its own widths and the width entering it,
and the head's only on the last width of each stage.  So each stage's width sequences are listed
once per entering width (a few thousand), grouped by their last width, and for every group of
(stage-3, stage-4) pairs the matching stage-5 sequences inside the window are a contiguous range
of the latency-sorted stage-5 list (two ``searchsorted`` calls).  Nothing outside the window is
ever materialised, so branches beyond t_max are cut without visiting them.

A candidate is a row: its order key (uint8 codes, column-major for fast pruning scans), its
latency, and for backbones the indices of its three stage sequences (to rebuild the ``Arch``).
Rows are sorted by latency so that "Lat(m) >= Lat(y_w)" is a suffix of the array.
"""

import itertools
import json
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..arch import NUM_STAGES, PRESETS, Arch
from ..errors import UserError
from ..fileio import atomic_output
from ..latency.table import LatencyTable, MissingEntriesError, measure_command
from ..space import DecoderSpace, SearchSpace, multiset_count

Space = Union[SearchSpace, DecoderSpace]
# Latencies are sums of a few dozen table entries; this absorbs float rounding at the window edges.
_WINDOW_SLACK = 1e-9


class CandidateSet:
    """The candidates of S^ sorted by latency: order keys, latencies and a way back to ``Arch``."""

    def __init__(self, space: Space, codes: np.ndarray, latency: np.ndarray, rows: Any) -> None:
        self.space = space
        self.codes = np.asfortranarray(codes, dtype=np.uint8)
        self.latency = np.asarray(latency, dtype=np.float64)
        self._rows = rows  # (N, 3) stage-sequence indices for backbones; settings for decoders
        self.top_code = int(self.codes.max()) if self.codes.size else 0
        self.stage_sequences = []  # type: List[List[Tuple[int, ...]]]

    def __len__(self) -> int:
        return int(self.latency.shape[0])

    def arch(self, index: int) -> Arch:
        index = int(index)
        if isinstance(self.space, DecoderSpace):
            return self.space.make(self._rows[index])
        i3, i4, i5 = (int(v) for v in self._rows[index])
        tables = self.stage_sequences
        return self.space.make([tables[0][i3], tables[1][i4], tables[2][i5]])

    def key(self, index: int) -> Tuple[int, ...]:
        return tuple(int(v) for v in self.codes[int(index)])

    def index_of(self, arch: Arch) -> Optional[int]:
        """Row of ``arch`` in S^, or None when it is outside the space or the latency window."""
        if not self.space.contains(arch):
            return None
        key = np.asarray(self.space.order_key(arch), dtype=np.uint8)
        # Equal keys mean equal architectures; only rows of the same latency can match.
        matches = np.flatnonzero(np.all(self.codes == key, axis=1))
        return int(matches[0]) if matches.size else None

    def json_dumper(self) -> Callable[[int], str]:
        """``index -> self.arch(index).dumps()`` without validating each of 10^6 architectures again:
        backbones differ only in their stages, so the JSON is assembled from fragments."""
        space = self.space
        if isinstance(space, DecoderSpace) or not len(self):
            return lambda index: self.arch(index).dumps()
        probe = self.arch(0)
        stages_text = json.dumps(probe.to_json()["stages"], separators=(",", ":"))
        prefix, suffix = probe.dumps().split(stages_text)
        stage_texts = [[json.dumps([space.block(s, w).to_json() for w in seq], separators=(",", ":"))
                        for seq in table] for s, table in enumerate(self.stage_sequences)]
        rows = self._rows

        def dumps(index: int) -> str:
            row = rows[index]
            return "{}[{},{},{}]{}".format(prefix, stage_texts[0][row[0]], stage_texts[1][row[1]],
                                           stage_texts[2][row[2]], suffix)

        return dumps

    def write_jsonl(self, path: str, progress: bool) -> None:
        """Every candidate as {"arch": <canonical JSON>, "latency_ms": ...} per line (atomically)."""
        from tqdm import tqdm

        dumps = self.json_dumper()
        with atomic_output(path) as temp, open(temp, "w") as stream:
            for start in tqdm(range(0, len(self), 65536), desc="writing S^", disable=not progress):
                lines = []
                for index in range(start, min(start + 65536, len(self))):
                    lines.append('{{"arch":{},"latency_ms":{}}}\n'.format(dumps(index), repr(float(self.latency[index]))))
                stream.write("".join(lines))

    @property
    def nbytes(self) -> int:
        rows = self._rows.nbytes if isinstance(self._rows, np.ndarray) else 0
        return int(self.codes.nbytes + self.latency.nbytes + rows)


# ---------------------------------------------------------------------- table checks
def require_parts(space: Space, table: LatencyTable) -> None:
    """Raise ``MissingEntriesError`` (a UserError) listing every part of the space the table lacks."""
    missing = table.missing_parts(space.all_parts())
    if missing:
        raise MissingEntriesError(missing, " ".join(measure_command(table.path, space=space)))


def covered_space(space: Space, table: LatencyTable) -> Space:
    """``space`` when the table has all its parts; else, for a backbone space, the space with its widest
    widths dropped until the table covers it.  ``MissingEntriesError`` (naming every part of ``space``
    the table lacks) when no narrower space is covered."""
    if isinstance(space, SearchSpace):
        widths = list(space.widths)
        while len(widths) > 1 and table.missing_parts(space.with_widths(widths).all_parts()):
            widths.pop()
        if len(widths) < len(space.widths) and not table.missing_parts(space.with_widths(widths).all_parts()):
            return space.with_widths(widths)
    require_parts(space, table)
    return space


# ---------------------------------------------------------------------- backbone enumeration
class _StageTable:
    """Every width sequence of one stage for every entering width, with its latency and codes."""

    def __init__(self, space: SearchSpace, stage: int, block_ms: Dict[Tuple[int, bool, int, int], float]) -> None:
        high = space.blocks_per_stage[stage][1]
        sequences, entries, lasts, latencies, codes = [], [], [], [], []
        for entry in space.entry_widths(stage):
            for widths in space.stage_sequences(stage, entry):
                total, c_in = 0.0, entry
                for j, width in enumerate(widths):
                    total += block_ms[(stage, j == 0, c_in, width)]
                    c_in = width
                sequences.append(widths)
                entries.append(entry)
                lasts.append(widths[-1])
                latencies.append(total)
                codes.append([0] * (high - len(widths)) + [space.widths.index(w) + 1 for w in widths])
        self.sequences = sequences
        self.entry = np.asarray(entries)
        self.last = np.asarray(lasts)
        self.latency = np.asarray(latencies, dtype=np.float64)
        self.codes = np.asarray(codes, dtype=np.uint8).reshape(len(sequences), high)

    def group(self, entry: int, last: int) -> np.ndarray:
        """Indices of sequences entered with ``entry`` channels and ending at width ``last``, by latency."""
        index = np.flatnonzero((self.entry == entry) & (self.last == last))
        return index[np.argsort(self.latency[index], kind="stable")]


# Width sequences x blocks a stage's table may hold (Python lists, tens of bytes each): the default space
# needs about 4e5, a --blocks range of hundreds of blocks billions (a MemoryError, or the OOM killer, later).
MAX_STAGE_CELLS = 10 ** 7


def check_stage_sizes(space: SearchSpace) -> None:
    """Refuse a stage whose width sequences would not fit in memory, before any is built."""
    for stage in range(NUM_STAGES):
        low, high = space.blocks_per_stage[stage]
        sequences = len(space.entry_widths(stage)) * sum(
            multiset_count(len(space.widths), count) for count in range(low, high + 1))
        if sequences * high > MAX_STAGE_CELLS:
            raise UserError("blocks: stage {} range {}-{} over {} widths makes {:,} width sequences of up to {} "
                            "blocks, more than the search can hold in memory; narrow the range or the widths".format(
                                stage + 3, low, high, len(space.widths), sequences, high))


def enumerate_space(space: SearchSpace, table: LatencyTable, progress: bool = False) -> CandidateSet:
    """S^ of a backbone space: all members with t_min <= Lat(x) <= t_max (bounds optional)."""
    check_stage_sizes(space)
    require_parts(space, table)
    block_ms = {}  # type: Dict[Tuple[int, bool, int, int], float]
    for stage in range(NUM_STAGES):
        for entry in space.entry_widths(stage):
            for width in space.widths:
                if width >= entry:
                    block_ms[(stage, True, entry, width)] = table.lookup(space.block_part(stage, True, entry, width).key)
        if space.blocks_per_stage[stage][1] < 2:
            continue  # single-block stages have no stride-1 blocks
        for c_in, c_out in itertools.combinations_with_replacement(space.widths, 2):
            block_ms[(stage, False, c_in, c_out)] = table.lookup(space.block_part(stage, False, c_in, c_out).key)
    stages = [_StageTable(space, stage, block_ms) for stage in range(NUM_STAGES)]
    fixed_ms = table.overhead_ms + sum(table.lookup(part.key) for part in space.stem_parts())
    t_min = -np.inf if space.t_min is None else space.t_min - _WINDOW_SLACK
    t_max = np.inf if space.t_max is None else space.t_max + _WINDOW_SLACK

    chunks = []  # type: List[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    triples = space.last_width_triples()
    bar = _progress(len(triples), progress)
    for l3 in space.widths:
        group3 = stages[0].group(space.stem[1], l3)
        if not group3.size:
            continue
        for l4 in (w for w in space.widths if w >= l3):
            group4 = stages[1].group(l3, l4)
            if not group4.size:
                continue
            pair_ms = (stages[0].latency[group3][:, None] + stages[1].latency[group4][None, :]).ravel()
            for l5 in (w for w in space.widths if w >= l4):
                bar.update(1)
                group5 = stages[2].group(l4, l5)
                if not group5.size:
                    continue
                stage5_ms = stages[2].latency[group5]  # ascending
                base = fixed_ms + sum(table.lookup(part.key) for part in space.head_parts((l3, l4, l5)))
                head = pair_ms + base
                # Window on stage 5 for each (stage 3, stage 4) pair: a contiguous range.
                lo = np.searchsorted(stage5_ms, t_min - head, side="left")
                hi = np.searchsorted(stage5_ms, t_max - head, side="right")
                counts = hi - lo
                total = int(counts.sum())
                if not total:
                    continue
                pair = np.repeat(np.arange(head.size), counts)
                offsets = np.cumsum(counts) - counts
                within = np.arange(total) - np.repeat(offsets, counts) + np.repeat(lo, counts)
                latency = head[pair] + stage5_ms[within]
                i3 = group3[pair // group4.size].astype(np.int32)
                i4 = group4[pair % group4.size].astype(np.int32)
                i5 = group5[within].astype(np.int32)
                chunks.append((latency, i3, i4, i5))
    bar.close()
    if chunks:
        latency = np.concatenate([c[0] for c in chunks])
        rows = np.stack([np.concatenate([c[k] for c in chunks]) for k in (1, 2, 3)], axis=1)
    else:
        latency = np.zeros(0)
        rows = np.zeros((0, 3), dtype=np.int32)
    del chunks
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0], latency))
    latency, rows = latency[order], rows[order]
    codes = np.empty((latency.size, space.key_length), dtype=np.uint8, order="F")
    start = 0
    for stage in range(NUM_STAGES):
        high = space.blocks_per_stage[stage][1]
        codes[:, start:start + high] = stages[stage].codes[rows[:, stage]]
        start += high
    candidates = CandidateSet(space, codes, latency, rows)
    candidates.stage_sequences = [s.sequences for s in stages]
    return candidates


def enumerate_decoders(space: DecoderSpace, table: LatencyTable) -> CandidateSet:
    """S^ of a decoder space: every [C3, C4, C5] setting whose network latency is in the window."""
    require_parts(space, table)
    settings = space.settings()
    latency = np.asarray([table.estimate(space.make(s), space.input_size) for s in settings])
    keep = np.ones(len(settings), dtype=bool)
    if space.t_min is not None:
        keep &= latency >= space.t_min - _WINDOW_SLACK
    if space.t_max is not None:
        keep &= latency <= space.t_max + _WINDOW_SLACK
    kept = [s for s, k in zip(settings, keep) if k]
    codes = np.asarray([space.order_key(space.make(s)) for s in kept], dtype=np.uint8).reshape(len(kept), 3)
    latency = latency[keep]
    order = np.lexsort(tuple(codes[:, k] for k in reversed(range(3))) + (latency,))
    return CandidateSet(space, codes[order], latency[order], [kept[i] for i in order])


def enumerate_candidates(space: Space, table: LatencyTable, progress: bool = False) -> CandidateSet:
    if isinstance(space, DecoderSpace):
        return enumerate_decoders(space, table)
    return enumerate_space(space, table, progress=progress)


def latency_histogram(latency: np.ndarray, bins: int = 12) -> List[Tuple[float, float, int]]:
    if not latency.size:
        return []
    counts, edges = np.histogram(latency, bins=bins)
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(len(counts))]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="enumerating S^", unit="group", disable=not enabled, leave=False)


class PresetPosition(NamedTuple):
    """Where a preset of the space's kind stands: ``missing`` parts in the table, or its latency, whether it
    is in S^ (else ``outside``: why not) and the share of S^ it is faster than."""

    name: str
    missing: int
    latency_ms: Optional[float] = None
    outside: Optional[str] = None
    faster_than: Optional[float] = None


def preset_positions(candidates: CandidateSet, table: LatencyTable) -> List[PresetPosition]:
    space = candidates.space
    found = []
    for name, arch in PRESETS.items():
        if isinstance(space, DecoderSpace):
            if arch.decoder is None or arch.backbone() != space.backbone or arch.output_stride != 1:
                continue
        elif arch.is_segmentation != (space.decoder is not None):
            continue
        missing = table.missing(arch, space.input_size)
        if missing:
            found.append(PresetPosition(name, len(missing)))
            continue
        latency = table.estimate(arch, space.input_size)
        if candidates.index_of(arch) is None:
            why = "outside the space" if not space.contains(arch) else "outside the latency window"
            found.append(PresetPosition(name, 0, latency, why))
            continue
        rank = int((candidates.latency < latency).sum())
        found.append(PresetPosition(name, 0, latency, None, 1 - rank / max(len(candidates), 1)))
    return found


def describe(candidates: CandidateSet) -> Dict[str, Any]:
    space = candidates.space
    info = {"size": len(candidates), "bytes": candidates.nbytes}  # type: Dict[str, Any]
    if isinstance(space, SearchSpace):
        info["size_without_window"] = space.size_without_window()
    if len(candidates):
        info["latency_ms"] = [float(candidates.latency[0]), float(candidates.latency[-1])]
    return info

