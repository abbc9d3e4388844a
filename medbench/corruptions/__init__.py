"""MedMNIST-C corruptions at every resolution, and the medbench 3D suite.

- :mod:`.ops2d` / :mod:`.ops3d`: the batched operations;
- :mod:`.registry`: each dataset's corruption list and the published 224-px parameters;
- :mod:`.params`: the protocol's parameters per dataset, size and severity (calibrated for 28-128 px);
- :mod:`.generate`: deterministic generation with a verified on-disk cache;
- :mod:`.evaluation`: the ``corruptions`` threat runner used by :func:`medbench.benchmark`.
"""

from .generate import CorruptedSets, build_corrupted_sets, corrupt
from .params import corruption_parameters, parameters_sha256
from .registry import corruption_names

__all__ = ["CorruptedSets", "build_corrupted_sets", "corrupt", "corruption_names", "corruption_parameters",
           "parameters_sha256"]
