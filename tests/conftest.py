"""Shared test set-up.

Triton's interpreter must be switched on before any ``@triton.jit`` decorator runs, so it is set here,
at collection time, on machines without a CUDA device.
"""

from __future__ import annotations

import os

try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard dependency
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
