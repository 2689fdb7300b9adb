"""Algorithm 1 (Partial Order Pruning), the state part: D, P, y_w, Delta P_w and B(D).

    D = trained architectures, P = pruned architectures (both start empty).
    After training x:   D <- D + {x}
      for all w in D:   y_w = argmin_{y in D} Lat(y)  s.t. Acc(y) >= Acc(w) + eps        (Eq. 3)
                        Delta P_w = {m in S^ | m <= w, Lat(m) >= Lat(y_w)}                  (Eq. 4)
                        P <- P + Delta P_w
      B(D) = {x in D | for all w in D: Lat(w) >= Lat(x) or Acc(w) <= Acc(x)}               (Eq. 6)

Exactly the paper's update, computed incrementally: Delta P_w depends on y_w only through
Lat(y_w), which can only fall as D grows, so Delta P_w only grows and P (a union) equals the union
of the current Delta P_w.  Training x changes y_w only for the w with Acc(x) >= Acc(w) + eps and
Lat(x) < Lat(y_w); those w (and x itself) are the only ones rescanned.

Ties, explicitly:
- Latency ties in Eq. 4 are pruned ("Lat(m) >= Lat(y_w)"): such an m is at best as accurate as
  y_w at the same latency, so it cannot improve the front.  Which of several equally fast y is
  y_w does not matter: only Lat(y_w) enters Eq. 4.
- Accuracy ties count as "better" in Eq. 3 (>=).  With eps = 0, w itself qualifies, so w's
  precedents at least as slow as w are pruned (they matter when a table's latencies tie).
- ``eps`` > 0 is the tolerance for the assumption's failures (Fig. 3b): a precedent m of w is only
  pruned where some y_w beats w by eps, i.e. m would have to beat w by eps to be worth training.
- B(D) is Eq. 6 verbatim: a trained model leaves the front only when another is strictly faster
  and strictly more accurate, so equally fast or equally accurate models stay in it together.

Stopped trials (curve early stopping, curves.py).  A trial x stopped after epoch k has no Acc(x),
only an upper bound UB(x, k) >= Acc(x).  Every precedent m <= x has Acc(m) <= Acc(x) <= UB(x, k),
so x enters Eq. 3-4 as a w with UB in place of Acc (``add_bound``; only a trial stopped in the
second half of its epochs does, see curves.py): y_x is the fastest *finished* y
with Acc(y) >= UB(x, k) + eps.  It never serves as a y (its accuracy is not known to be high enough),
and B(D) holds only finished trials.  D (``d_index``/``d_accuracy``) is the finished trials; the
``trained`` mask also holds the stopped ones, which are never asked again.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .order import precedent_mask


class PartialOrderPruning:
    """D, P and B(D) over candidates given by order-key ``codes`` and sorted ``latency``."""

    def __init__(self, codes: np.ndarray, latency: np.ndarray, eps: float = 0.0, top_code: Optional[int] = None):
        self.codes = codes
        self.latency = np.asarray(latency, dtype=np.float64)
        if self.latency.size > 1 and np.any(np.diff(self.latency) < 0):
            raise ValueError("candidates must be sorted by latency")
        if eps < 0:
            raise ValueError("eps must be >= 0, got {}".format(eps))
        self.eps = float(eps)
        self.top_code = int(codes.max()) if top_code is None and codes.size else int(top_code or 0)
        self.pruned = np.zeros(self.latency.size, dtype=bool)  # P
        self.trained = np.zeros(self.latency.size, dtype=bool)  # D as a mask
        self.d_index = []  # type: List[int]  # finished trials
        self.d_accuracy = []  # type: List[float]
        self.s_index = []  # type: List[int]  # stopped trials, with their upper bounds
        self.s_bound = []  # type: List[float]
        # Every w (finished, then stopped, in arrival order): its candidate, Acc or UB, and Lat(y_w)
        # (inf while no y_w exists).
        self._w_index = []  # type: List[int]
        self._w_value = []  # type: List[float]
        self._y_latency = np.zeros(0)

    # ------------------------------------------------------------------ the update
    def add(self, index: int, accuracy: float) -> int:
        """Add a trained candidate; returns how many candidates became newly pruned."""
        index = int(index)
        if self.trained[index]:
            raise ValueError("candidate {} is already trained".format(index))
        accuracy = float(accuracy)
        self.trained[index] = True
        self.d_index.append(index)
        self.d_accuracy.append(accuracy)
        lat_x = self.latency[index]
        old = self._y_latency
        new = old.copy()
        improves = (accuracy >= np.asarray(self._w_value) + self.eps) & (lat_x < old)
        new[improves] = lat_x
        self._y_latency = new
        # y_x over all finished trials (including x, when eps is 0).
        return self._add_w(index, accuracy, list(np.flatnonzero(improves)))

    def add_bound(self, index: int, bound: float, prune: bool = True) -> int:
        """Add a stopped trial with its upper bound UB >= Acc; returns how many became newly pruned.
        ``prune=False``: the trial is only marked as trained (a bound too early to be trusted with its
        precedents, curves.py)."""
        index = int(index)
        if self.trained[index]:
            raise ValueError("candidate {} is already trained".format(index))
        self.trained[index] = True
        self.s_index.append(index)
        self.s_bound.append(float(bound))
        return self._add_w(index, float(bound), []) if prune else 0

    def _add_w(self, index: int, value: float, changed: List[int]) -> int:
        better = np.asarray(self.d_accuracy) >= value + self.eps
        y_x = float(self.latency[self.d_index][better].min()) if better.any() else np.inf
        self._w_index.append(index)
        self._w_value.append(value)
        self._y_latency = np.append(self._y_latency, y_x)
        before = int(np.count_nonzero(self.pruned))
        for w in changed + [len(self._w_index) - 1]:
            y_lat = self._y_latency[w]
            if np.isfinite(y_lat):
                self._prune(self._w_index[w], y_lat)
        return int(np.count_nonzero(self.pruned)) - before

    def _prune(self, w: int, y_latency: float) -> None:
        # Delta P_w: precedents of w with Lat(m) >= Lat(y_w), a suffix of the latency-sorted rows.
        start = int(np.searchsorted(self.latency, y_latency, side="left"))
        if start >= self.latency.size:
            return
        mask = precedent_mask(self.codes, self.codes[w], start=start, top=self.top_code)
        self.pruned[start:] |= mask

    # ------------------------------------------------------------------ views
    def front(self) -> List[int]:
        """B(D) (Eq. 6), as candidate indices sorted by latency."""
        if not self.d_index:
            return []
        index = np.asarray(self.d_index)
        lat = self.latency[index]
        acc = np.asarray(self.d_accuracy)
        order = np.lexsort((-acc, lat))
        lat, acc, index = lat[order], acc[order], index[order]
        # x stays unless a strictly faster model is strictly more accurate: compare with the best
        # accuracy among all models before x's latency group.
        prefix_best = np.maximum.accumulate(acc)
        group_start = np.searchsorted(lat, lat, side="left")
        best_faster = np.where(group_start > 0, prefix_best[np.maximum(group_start - 1, 0)], -np.inf)
        keep = ~(acc < best_faster)
        return [int(v) for v in index[keep]]

    @property
    def n_trained(self) -> int:
        """Trials trained, to the end or stopped early."""
        return len(self.d_index) + len(self.s_index)

    @property
    def n_stopped(self) -> int:
        return len(self.s_index)

    def best_at(self, latency: float) -> float:
        """max Acc(y) over finished y with Lat(y) <= ``latency`` (the front there), -inf if none."""
        if not self.d_index:
            return -np.inf
        faster = self.latency[self.d_index] <= latency
        return float(np.asarray(self.d_accuracy)[faster].max()) if faster.any() else -np.inf

    @property
    def n_pruned(self) -> int:
        """|P minus D|: candidates excluded without training."""
        return int(np.count_nonzero(self.pruned & ~self.trained))

    @property
    def n_covered(self) -> int:
        """|P union D|: candidates trained or pruned (the paper's "covered")."""
        return int(np.count_nonzero(self.pruned | self.trained))

    def accuracy_of(self, index: int) -> Optional[float]:
        try:
            return self.d_accuracy[self.d_index.index(int(index))]
        except ValueError:
            return None


def comparable_index_pairs(codes: np.ndarray, indices: Sequence[int]) -> List[Tuple[int, int]]:
    """Positions (i, j) in ``indices`` of every trained comparable pair x_i <= x_j, i != j,
    successor by successor."""
    keys = codes[np.asarray(indices, dtype=np.int64)]
    pairs = []
    for j in range(keys.shape[0]):
        below = np.all(keys <= keys[j], axis=1)
        below[j] = False
        pairs.extend((int(i), j) for i in np.flatnonzero(below))
    return pairs


def violations(codes: np.ndarray, latency: np.ndarray, indices: Sequence[int], accuracies: Sequence[float],
               eps: float = 0.0, pairs: Optional[List[Tuple[int, int]]] = None) -> List[dict]:
    """Trained pairs x <= y (x != y) with Acc(x) > Acc(y) + eps: where the assumption failed (Fig. 3b).
    ``pairs`` (from ``comparable_index_pairs``) saves scanning the trained set again."""
    index = np.asarray(indices, dtype=np.int64)
    acc = np.asarray(accuracies, dtype=np.float64)
    found = []
    for i, j in comparable_index_pairs(codes, index) if pairs is None else pairs:
        if acc[i] > acc[j] + eps:
            found.append({"precedent": int(index[i]), "successor": int(index[j]),
                          "delta_latency_ms": float(latency[index[j]] - latency[index[i]]),
                          "delta_accuracy": float(acc[j] - acc[i])})
    return found


def comparable_pairs(codes: np.ndarray, latency: np.ndarray, indices: Sequence[int],
                     accuracies: Sequence[float], pairs: Optional[List[Tuple[int, int]]] = None) -> List[tuple]:
    """(Delta Lat, Delta Acc) of every trained comparable pair x <= y, x != y (the paper's Fig. 3b)."""
    index = np.asarray(indices, dtype=np.int64)
    acc = np.asarray(accuracies, dtype=np.float64)
    return [(float(latency[index[j]] - latency[index[i]]), float(acc[j] - acc[i]))
            for i, j in (comparable_index_pairs(codes, index) if pairs is None else pairs)]
