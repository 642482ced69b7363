"""Quantizers: FSQ, used by every model."""

from vtcodec.quantizers.fsq import FSQ

__all__ = ["FSQ"]
