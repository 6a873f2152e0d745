"""Encoders: conv frame encoders/decoders, content (DeepSets) encoders and amortised posteriors."""

from __future__ import annotations

from latentdyn.encoders.content import DeepSetEncoder, last_frames, random_distinct_frames, select_frames
from latentdyn.encoders.conv import (
    SUPPORTED_IMAGE_SIZES,
    DCGANDecoder,
    DCGANEncoder,
    EncoderOutput,
    FrameDecoder,
    FrameEncoder,
    VGGDecoder,
    VGGEncoder,
    init_conv_weights_,
)
from latentdyn.encoders.posteriors import FilteringPosterior, InitialStatePosterior, SmoothingPosterior

__all__ = [
    "SUPPORTED_IMAGE_SIZES",
    "DCGANDecoder",
    "DCGANEncoder",
    "DeepSetEncoder",
    "EncoderOutput",
    "FilteringPosterior",
    "FrameDecoder",
    "FrameEncoder",
    "InitialStatePosterior",
    "SmoothingPosterior",
    "VGGDecoder",
    "VGGEncoder",
    "init_conv_weights_",
    "last_frames",
    "random_distinct_frames",
    "select_frames",
]
