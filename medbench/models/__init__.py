"""Models: registered architectures and ``timm/<name>``, their kwargs models, and safetensors weights."""

from .architectures import (BUILDER_ARGS, ArchitectureKwargsError, Classifier, Normalize, UnknownArchitectureError,
                            architecture_kwargs_model, architecture_kwargs_problems, build_architecture,
                            check_architecture_kwargs, count_parameters, estimate_parameters, list_architectures,
                            register_architecture)
from .kwargs import ArchitectureKwargs
from .timm_support import (MAX_TIMM_PARAMETERS, TimmBuildError, TimmKwargs, TorchvisionUnavailable,
                           UnknownTimmModelError, import_timm, is_timm)
from .weights import (PICKLE_MAGIC, WeightsError, load_state_strict, load_weights, read_safetensors, save_weights,
                      sha256sum)

__all__ = [
    "BUILDER_ARGS", "MAX_TIMM_PARAMETERS", "PICKLE_MAGIC", "ArchitectureKwargs", "ArchitectureKwargsError",
    "Classifier", "Normalize", "TimmBuildError", "TimmKwargs", "TorchvisionUnavailable", "UnknownArchitectureError",
    "UnknownTimmModelError", "WeightsError", "architecture_kwargs_model", "architecture_kwargs_problems",
    "build_architecture", "check_architecture_kwargs", "count_parameters", "estimate_parameters", "import_timm",
    "is_timm", "list_architectures", "load_state_strict", "load_weights", "read_safetensors", "register_architecture",
    "save_weights", "sha256sum",
]
