"""The CUDA tests' set-up: cuBLAS's fixed workspaces, which must be chosen before the process's first cuBLAS call
(the lockstep checks run deterministic kernels: lockstep.py says why)."""
from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
