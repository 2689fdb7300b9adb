"""Partial Order Pruning (the paper's Algorithm 1) and everything around it: candidate enumeration,
the ask/tell study, journals, evaluators, executors and reports.  Host side (Python >= 3.8);
torch, ray, optuna and matplotlib are imported lazily where they are used."""
