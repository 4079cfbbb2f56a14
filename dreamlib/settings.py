"""Global switches read in exactly one place.

``QUICK`` is the course-wide quick mode. Set the environment variable
``DREAMLIB_QUICK=1`` (``make test`` and CI do) and every notebook, runner and
benchmark shrinks image sizes, iteration counts and set sizes so the whole
course executes in minutes on a 2-core CPU. Unset it (or ``=0``) for the real run.
Notebooks never need editing to switch.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

_TRUE = {"1", "true", "yes", "on"}

#: True when ``DREAMLIB_QUICK`` is set to 1/true/yes/on.
QUICK: bool = os.environ.get("DREAMLIB_QUICK", "0").strip().lower() in _TRUE

#: Root of the repository checkout (parent of the ``dreamlib`` package).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent

#: Shipped sample data (clean images, manifest, small teachers).
DATA_SAMPLES: Path = Path(os.environ.get("DREAMLIB_DATA_SAMPLES", REPO_ROOT / "data_samples"))

#: Where generated artefacts go (synthetic benchmark, results). Not tracked by git.
WORK_DIR: Path = Path(os.environ.get("DREAMLIB_WORK_DIR", REPO_ROOT / "work"))


def quick(full, quick_value):
    """Return ``quick_value`` in quick mode and ``full`` otherwise.

    >>> steps = quick(2000, 20)  # 2000 iterations for real, 20 in CI
    """
    return quick_value if QUICK else full


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:  # torch is a hard dependency, but settings must import without it
        pass


def pick_device(prefer: str | None = None) -> "torch.device":
    """Best available device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (e.g. ``"cpu"``) or the environment variable ``DREAMLIB_DEVICE``
    overrides the automatic choice.
    """
    import torch

    choice = prefer or os.environ.get("DREAMLIB_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
