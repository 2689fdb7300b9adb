"""A trial's state at the end of every epoch (model, optimiser, scheduler, gradient scaler, epoch, the
losses and progress so far, torch's RNG state), written atomically beside the trial's other files and
read back with ``torch.load(weights_only=True)``: a checkpoint is data, never code.

A checkpoint records a fingerprint of what it trained (architecture and every setting that changes the
numbers); one that does not match the trial asking for it is ignored, so an edited search starts that
trial over rather than continuing someone else's training."""

import hashlib
import io
import json
import os
from typing import Any, Dict, Optional

from ...fileio import write_atomic

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(directory: str) -> str:
    return os.path.join(directory, CHECKPOINT_NAME)


def fingerprint(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    import torch

    # Serialised in memory first: torch.save's own file writer turns a full disk into a RuntimeError
    # ("unexpected pos"), where write_atomic's plain writes give the one-line DiskFullError.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str, expected: str) -> Optional[Dict[str, Any]]:
    """The state saved at ``path`` if there is one with the ``expected`` fingerprint, else None."""
    import torch

    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint costs its epochs, not the trial
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != expected:
        return None
    return state
