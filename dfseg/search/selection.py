"""Which candidate of S^ minus P to train next: the paper's random choice, or a guided one.

Algorithm 1 draws uniformly from S^ \\ P.  Pruning uses the partial order's *upper* bounds (a
precedent m <= w is at most as accurate as w).  The same assumption also gives *lower* bounds:
a successor m >= p is at least as accurate as a trained p, so

    lower(m) = max { Acc(p) : p in D, p <= m }

is known without training m.  ``guided`` selection spends a share of the draws (1 - explore) on
the candidate whose lower bound beats the current front at its latency by the most,

    gain(m) = lower(m) - max { Acc(y) : y in D, Lat(y) <= Lat(m) },

and the rest on the paper's uniform draw, which keeps finding the regions no trained model
bounds yet.  Every candidate still comes from S^ \\ P and pruning is unchanged, so Algorithm 1's
guarantees hold; only the order of training changes.  On the synthetic landscapes of
benchmarks/bench_search_efficiency.py this reaches a given hypervolume with fewer trainings than
the uniform draw (numbers in README.md).  Ties, including candidates no faster trained model
bounds (gain = +inf), are broken uniformly at random with the same seeded generator.
"""

from typing import Sequence

import numpy as np

from .order import successor_mask
from .pop import PartialOrderPruning

SELECTIONS = ("random", "guided")


class GuidedSelection:
    """lower(m) for every candidate, updated as results arrive, and the guided choice.  D (the
    trained models and their accuracies) is read from the search's ``PartialOrderPruning``."""

    def __init__(self, pop: PartialOrderPruning, explore: float = 0.5) -> None:
        if not 0.0 <= explore <= 1.0:
            raise ValueError("explore must be in [0, 1], got {}".format(explore))
        self.pop = pop
        self.explore = float(explore)
        self.lower = np.full(pop.latency.shape[0], -np.inf)

    def observe(self, index: int, accuracy: float) -> None:
        mask = successor_mask(self.pop.codes, self.pop.codes[int(index)])
        np.maximum(self.lower, accuracy, out=self.lower, where=mask)

    def gain(self, choices: Sequence[int]) -> np.ndarray:
        """lower(m) minus the front's accuracy at Lat(m), for the candidate rows ``choices``."""
        choices = np.asarray(choices, dtype=np.int64)
        lower = self.lower[choices]
        if not self.pop.n_trained:
            return np.full(choices.size, -np.inf)
        trained_latency = self.pop.latency[self.pop.d_index]
        order = np.argsort(trained_latency, kind="stable")
        best_so_far = np.maximum.accumulate(np.asarray(self.pop.d_accuracy)[order])
        position = np.searchsorted(trained_latency[order], self.pop.latency[choices], side="right")
        front = np.where(position > 0, best_so_far[np.maximum(position - 1, 0)], -np.inf)
        with np.errstate(invalid="ignore"):
            gain = lower - front
        # No lower bound means nothing is known: never preferred by the guided draw.
        return np.where(np.isfinite(lower), gain, -np.inf)

    def choose(self, choices: np.ndarray, rng: np.random.Generator) -> int:
        """One row of ``choices`` (the candidates still available)."""
        if rng.random() < self.explore or not self.pop.n_trained:
            return int(choices[rng.integers(choices.size)])
        gain = self.gain(choices)
        best = gain.max()
        if best == -np.inf:
            return int(choices[rng.integers(choices.size)])
        top = choices[gain >= best]
        return int(top[rng.integers(top.size)])
