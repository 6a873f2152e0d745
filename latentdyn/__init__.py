"""latentdyn: latent state-space dynamics for PyTorch.

The parts, by role: transition cells (``ResidualCell``, ``ODECell``, ``MLPCell``, ``GRUCell``), integrators
(``EulerIntegrator``, ``OdeintIntegrator``), Gaussian heads and priors, amortised posteriors, content
encoders, conv frame encoders/decoders, the ``LatentSSM`` rollout and ELBO objectives. Video data sets,
metrics and media live in ``latentdyn.video``.
"""

from __future__ import annotations

from latentdyn._checks import substeps_from_dt
from latentdyn.cells import CellPath, GRUCell, MLPCell, ODECell, ResidualCell, TransitionCell
from latentdyn.distributions import (
    ConditionalGaussianPrior,
    GaussianHead,
    StandardNormal,
    diag_gaussian,
    diag_gaussian_from_raw,
    index_steps,
)
from latentdyn.encoders import (
    DCGANDecoder,
    DCGANEncoder,
    DeepSetEncoder,
    EncoderOutput,
    FilteringPosterior,
    FrameDecoder,
    FrameEncoder,
    InitialStatePosterior,
    SmoothingPosterior,
    VGGDecoder,
    VGGEncoder,
    init_conv_weights_,
    last_frames,
    random_distinct_frames,
    select_frames,
)
from latentdyn.fields import MLPField, VectorField, check_field_sizes
from latentdyn.integrators import INTEGRATOR_NAMES, EulerIntegrator, Integrator, OdeintIntegrator, by_name
from latentdyn.nn import MLP, TimeDistributed, init_orthogonal_
from latentdyn.objectives import ElboTerms, elbo, gaussian_nll, kl_per_sequence, residual_penalty
from latentdyn.ssm import LatentSSM, Role, Rollout, Sampler, default_sampler, noise_sampler

__version__ = "0.1.0"

__all__ = [
    "INTEGRATOR_NAMES",
    "MLP",
    "CellPath",
    "ConditionalGaussianPrior",
    "DCGANDecoder",
    "DCGANEncoder",
    "DeepSetEncoder",
    "ElboTerms",
    "EncoderOutput",
    "EulerIntegrator",
    "FilteringPosterior",
    "FrameDecoder",
    "FrameEncoder",
    "GRUCell",
    "GaussianHead",
    "InitialStatePosterior",
    "Integrator",
    "LatentSSM",
    "MLPCell",
    "MLPField",
    "ODECell",
    "OdeintIntegrator",
    "ResidualCell",
    "Role",
    "Rollout",
    "Sampler",
    "SmoothingPosterior",
    "StandardNormal",
    "TimeDistributed",
    "TransitionCell",
    "VGGDecoder",
    "VGGEncoder",
    "VectorField",
    "by_name",
    "check_field_sizes",
    "default_sampler",
    "diag_gaussian",
    "diag_gaussian_from_raw",
    "elbo",
    "gaussian_nll",
    "index_steps",
    "init_conv_weights_",
    "init_orthogonal_",
    "kl_per_sequence",
    "last_frames",
    "noise_sampler",
    "random_distinct_frames",
    "residual_penalty",
    "select_frames",
    "substeps_from_dt",
]
