"""The ink masks of MedMNIST-C's stain_deposit, vendored from ``medmnistc`` 0.1.0 (Apache-2.0).

``medmnistc/assets/inks.npz`` (sha256 76a895e8f4ba6f98cc13fffd6060e1b2ef037e7baee6c5393732346a40eecf0f,
Di Salvo, Doerrich, Ledig 2024) holds five sets of ten binary masks; the original only ever uses
set ``"3"`` (24 x 24 px, severities 1-4) and set ``"4"`` (32 x 32 px, severity 5). Those two are
stored here as zlib-compressed, bit-packed, base64 text (no pickle, no package data file);
tests/test_corruptions_fidelity.py checks them against the installed original.
"""

from __future__ import annotations

import base64
import zlib
from functools import lru_cache

import numpy as np

_PACKED = {
    24: (
        "eNp9kkFKBDEQRasJ2O6ycCUIWbp1OQshh/ECggsFhfTRAh7AK2TlOjADNtjk+6u6M7YbwyMwmfTPr18lTRxIHlHCxpyUyj1iDqg8"
        "9KhneJPIQxFXZJikL1/FNwMScAhYAhCBhG0l+xnR+JdXZqq5VtwiwyxSu9Cj7ZBrXER8BjSgpZ1OX9RXKfp0qPJRZaymks2NSCpO"
        "3dJzSVigOv8sPrFEhSWr4IBJXsSdZMQ0WgIWBTPhi4T3/wiyrl1pCp92KIOSxU8Ss8RKVinTmaEsRoUeMnbdw2/gTDufQ6YrNutK"
        "76xOGrbSWurEvq9+guZceu8y2y1vXe5O5HUyzXImogB5B9MrZkMn4ZCm+2e5fBK5MViXz3Kb2S+hTx2k3BNYh+fkNzMabNgOje/s"
        "jnltF6NWV4mjqAWSYE6MxT5H2OGVRuhq/KrufZvDH9KtudQ="
    ),
    32: (
        "eNp9k7Fu1EAQhn9jiEEglgeI4ki8QwAp0eZRrqMkZQqkW4kXSAdVeAVKClDcQXcp03krjoozSpG7xPHwj2d9GBKw9OnuVuedf/75"
        "B7Cn+LaP4gfgpCEtShF4MpWux9vvyPNGKYzojY7IGP5nt5Srd06ugE9LYPcQ2FRw+9MAWQfkolTUsGRdCYlKjDPSJjplarRkOcD6"
        "Leu31Pc6Fzmk8GpNqZevAorlqPhzFl9NULB5Lx9Y+FThu5H3NVP71D61924m8ramLrIc6bkmUXX2mhcSNhZydI++5Z/nyHfuAk/w"
        "/2eL+BcV5DqCtZSM5Mlvl1D/fUJMQ0waqzQnnV/gO7yrJ2ZK3X8P7C3Q4IBHXfhd/GCCjDXNAzU/Krn1vxz611lTQ+1sHqvRLGSk"
        "RT2oqKGihrBBctkBynB739v3AUYjo6SMEnO5JKJUOoMBb/1Vr4izGqpNPRhy+N3/nYUriSc/O5RNBxeBB2H7z9qP1XOlIsyEv6SG"
        "bk1OXPKUfNT7U97XmXc36QqjHevP5JgZ3+p7XT/53EJf0KMvnJlyIaG0GcYBZ36elpaB/kx73uP5M5vvhHr3i0WHnlpw5z0XypPp"
        "GfCU3hfRUCMyXbh4cxYFzx19KLkjXoKc9HMOKdtNoqrTTpZGUI8W9Gre0+IlUf/AKOU1v89a3k0dFzAm/16D7IiWtKXOPzxMWU51"
        "hh3Q/r+y/xk5Lm3fdS8OVIez7FjvvtW5Ruydc//fcPfPA8PA/jhvB/wCpSiwTA=="
    ),
}
INK_SIZES = tuple(_PACKED)


@lru_cache(maxsize=None)
def inks(size: int) -> np.ndarray:
    """The ten binary ink masks of side ``size`` (24 or 32 px at 224 px), uint8 ``10 x size x size``."""
    if size not in _PACKED:
        raise ValueError(f"stain_deposit ink_size must be one of {', '.join(map(str, INK_SIZES))} (224-px units); got {size}.")
    bits = np.frombuffer(zlib.decompress(base64.b64decode(_PACKED[size])), dtype=np.uint8).reshape(10, -1)
    out = np.unpackbits(bits, axis=1)[:, : size * size].reshape(10, size, size)
    out.setflags(write=False)
    return out
