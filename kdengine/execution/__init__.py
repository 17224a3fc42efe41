"""Where runs train: the executor (one run to completion, teachers first), the worker that claims queued runs,
starting detached workers, packing runs onto GPUs, and Ray."""
