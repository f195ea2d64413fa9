"""The Encoder interface and the encoder registry."""

from bench.encoders.base import Encoder, EncoderSpec
from bench.encoders.registry import ENCODERS, create_encoder, encoder_names

__all__ = ["Encoder", "EncoderSpec", "ENCODERS", "create_encoder", "encoder_names"]
