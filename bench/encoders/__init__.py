"""Stage 2 of the flow: the Encoder interface and registry, checkpoints (safe reading, weights hashes, released
weights), model cards, pretraining, the encoding pass with its embedding cache, and `bench embed`."""

from bench.encoders.base import Encoder, EncoderSpec
from bench.encoders.registry import ENCODERS, create_encoder, encoder_names

__all__ = ["Encoder", "EncoderSpec", "ENCODERS", "create_encoder", "encoder_names"]
