"""Quantizers: FSQ (used by every shipped model) and VQ with codebook splitting (optional)."""

from vtcodec.quantizers.fsq import FSQ
from vtcodec.quantizers.vq import VQ

__all__ = ["FSQ", "VQ"]
