"""SAM and the variants Hassan et al. (arXiv:2408.04065) compare it with, behind one two-step
interface (:class:`SharpnessAware`): ``OPTIMIZERS`` maps each training method name to its class."""

from .asam import ASAM, ASAMSettings
from .base import SharpnessAware
from .gsam import GSAM, GSAMSettings
from .sam import SAM, SAMSettings
from .wsam import WSAM, WSAMSettings

OPTIMIZERS: dict[str, type[SharpnessAware]] = {"sam": SAM, "asam": ASAM, "gsam": GSAM, "wsam": WSAM}

__all__ = ["ASAM", "ASAMSettings", "GSAM", "GSAMSettings", "OPTIMIZERS", "SAM", "SAMSettings",
           "SharpnessAware", "WSAM", "WSAMSettings"]
