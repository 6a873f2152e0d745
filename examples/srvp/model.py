"""SRVP composed from latentdyn parts: wiring only.

    frames x ──encoder──► codes h ─┬─ q(y_0 | h_0..h_{k-1})            (InitialStatePosterior)
                                   ├─ q(z_t | h_0..h_t)                 (FilteringPosterior)
                                   └─ w = DeepSet(h of k frames)        (DeepSetEncoder)
    y_0 ──LatentSSM(ResidualCell(f), p(z|y))──► y_0..y_{T-1} ──decoder([w, y], skips)──► x̂

Shapes are time-first: frames (T, B, C, H, W), codes (T, B, Dh), states (T, B, Dy).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch
from einops import rearrange, repeat
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from examples.srvp.config import TOLERANCE_METHODS, ModelConfig, check_config_type
from latentdyn._autocast import autocast_enabled
from latentdyn._checks import check_bool, check_positive_int, check_shape, check_tensor
from latentdyn._repr import fields_repr
from latentdyn.cells import GRUCell, MLPCell, ODECell, ResidualCell, TransitionCell
from latentdyn.distributions import ConditionalGaussianPrior, StandardNormal, diag_gaussian
from latentdyn.encoders.content import (
    DeepSetEncoder,
    check_frame_indices,
    last_frames,
    random_distinct_frames,
    select_frames,
)
from latentdyn.encoders.conv import DCGANDecoder, DCGANEncoder, VGGDecoder, VGGEncoder, init_conv_weights_
from latentdyn.encoders.posteriors import FilteringPosterior, InitialStatePosterior
from latentdyn.fields import MLPField
from latentdyn.integrators import by_name
from latentdyn.nn import MLP, init_orthogonal_
from latentdyn.objectives import (
    ElboTerms,
    elbo,
    gaussian_nll,
    kl_per_sequence,
    residual_penalty,
)
from latentdyn.ssm import LatentSSM, Rollout, Sampler, default_sampler

__all__ = [
    "SRVP",
    "Encoded",
    "FrameModel",
    "Prediction",
    "SRVPOutput",
    "SampleChunk",
    "build_model",
    "predict_in_chunks",
]


@dataclass(eq=False)  # (tensor fields: == raised)
class Encoded:
    """Frame codes and the skip tensors of every frame.

    Attributes:
        codes: (T, B, Dh).
        skips: one tensor per encoder block, deepest first, each (T, B, C_j, H_j, W_j); empty without skips.
    """

    codes: torch.Tensor
    skips: list[torch.Tensor]

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


@dataclass(eq=False)  # (tensor fields: == raised)
class SRVPOutput:
    """Result of :meth:`SRVP.infer`.

    Attributes:
        frames: decoded frames at integer times (T, B, C, H, W), or at every sub-step
            ((T−1)·n + 1, B, C, H, W) when asked.
        rollout: the latent trajectory, z, prior, posterior and residuals.
        q_y0: q(y_0 | x_0..x_{k−1}), batch (B,).
        w: content, (B, Dw), or None without content.
        content_indices: frames used for w, (k, B), or None.
        skip_index: frame whose skips fed the decoder, (B,), or None.
    """

    frames: torch.Tensor
    rollout: Rollout
    q_y0: Independent
    w: torch.Tensor | None
    content_indices: torch.Tensor | None
    skip_index: torch.Tensor | None

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


@dataclass(eq=False)  # (tensor fields: == raised)
class Prediction:
    """Result of :meth:`SRVP.predict`: N sampled futures of B sequences.

    Attributes:
        frames: predicted frames clamped to [0, 1], (N, T_f, B, C, H, W) for T_f = n_future frames, or
            (N, T_f·n, B, C, H, W) with every intermediate frame when ``substep_frames`` was asked (frame j is
            at time nt_cond − 1 + (j + 1)/n).
        cond_frames: reconstructions of the conditioning frames, (N, T_c, B, C, H, W); None when
            ``decode_cond=False`` was asked.
        states: predicted states at frame times, (N, T_f, B, Dy).
        cond_rollout: the posterior rollout over the conditioning frames, batch N·B (sample-major).
        future_rollout: the prior rollout from the last conditioning state, batch N·B (sample-major);
            its first state is the last conditioning state.
    """

    frames: torch.Tensor
    cond_frames: torch.Tensor | None
    states: torch.Tensor
    cond_rollout: Rollout
    future_rollout: Rollout

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


@dataclass(eq=False)  # (tensor fields: == raised)
class SVGLPPrediction:
    """Result of :meth:`SVGLP.predict`: N sampled futures of B sequences (the fields SRVP's ``Prediction`` shares).

    Also exported by :mod:`examples.srvp.svglp`; defined here so that :meth:`FrameModel.predict`'s return type
    resolves at run time (``typing.get_type_hints``) without an import cycle.

    Attributes:
        frames: predicted frames clamped to [0, 1], (N, T_f, B, C, H, W).
        cond_frames: reconstructions of the conditioning frames clamped to [0, 1], (N, T_c, B, C, H, W): frame 0
            autoencoded, frames 1..T_c−1 the one-step predictions made with the posterior; None when
            ``decode_cond=False`` was asked.
        codes: predicted codes of the future frames (decoder inputs), (N, T_f, B, Dh).
        z: prior noise of every future frame, (N, T_f, B, Dz).
    """

    frames: torch.Tensor
    cond_frames: torch.Tensor | None
    codes: torch.Tensor
    z: torch.Tensor

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


class FrameModel(nn.Module):
    """Frame-level helpers shared by SRVP and the SVG-LP baseline (both have ``config``, ``encoder``), and the
    methods that the training, evaluation and demo code call on either."""

    config: ModelConfig
    encoder: nn.Module

    def init_weights(self) -> FrameModel:
        """Initialise the weights as the official code does; returns the model."""
        raise NotImplementedError

    def predict(
        self,
        cond_frames: torch.Tensor,
        n_future: int,
        n_samples: int = 1,
        *,
        n_substeps: int | None = None,
        substep_frames: bool = False,
        sample: bool = True,
        sampler: Sampler | None = None,
        decode_cond: bool = True,
    ) -> Prediction | SVGLPPrediction:
        """Predict futures from conditioning frames (see :meth:`SRVP.predict`)."""
        raise NotImplementedError

    def check_frames(self, x: torch.Tensor, name: str = "x") -> tuple[int, int]:
        """Check floating-point frames (T, B, C, H, W) against the configuration, with T >= 1 and B >= 1; returns
        (T, B). Their values are not read (that would synchronise the device): frames are expected in [0, 1]."""
        c = self.config
        s = check_shape(x, "t b c h w", name, c=c.channels, h=c.image_size, w=c.image_size)
        if not x.is_floating_point():
            raise TypeError(
                f"{name}: expected floating-point frames in [0, 1], got dtype {x.dtype}"
                + (" (divide uint8 frames by 255)" if x.dtype == torch.uint8 else "")
            )
        if s["t"] == 0 or s["b"] == 0:
            raise ValueError(f"{name}: expected at least one frame of one sequence (T, B >= 1), got {list(x.shape)}")
        return s["t"], s["b"]

    def encode(self, x: torch.Tensor) -> Encoded:
        """Encode every frame of x (T, B, C, H, W) at once (BatchNorm sees all T·B frames in training)."""
        t = x.shape[0]
        out = self.encoder(rearrange(x, "t b c h w -> (t b) c h w"))
        skips = [rearrange(s, "(t b) c h w -> t b c h w", t=t) for s in out.skips]
        return Encoded(rearrange(out.code, "(t b) d -> t b d", t=t), skips if self.config.skip_connections else [])


class SRVP(FrameModel):
    """Stochastic Latent Residual Video Predictor (Franceschi et al., 2020) from latentdyn parts.

    Args:
        config: the model configuration.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_config_type(config, ModelConfig, "config")
        self.config = c = config
        # Construction order = the official registration order, so that a seeded RNG draws the same
        # default initialisations: encoder, decoder, w, q(y_0), z LSTM and head, prior, dynamics.
        enc_cls, dec_cls = (DCGANEncoder, DCGANDecoder) if c.architecture == "dcgan" else (VGGEncoder, VGGDecoder)
        w_size = c.inference_hidden if c.use_content else 0
        self.encoder = enc_cls(
            image_size=c.image_size, channels=c.channels, base_width=c.conv_width, code_size=c.code_size
        )
        self.decoder = dec_cls(
            image_size=c.image_size,
            channels=c.channels,
            base_width=c.conv_width,
            in_features=w_size + c.state_size,
            skip=c.skip_connections,
        )
        self.content = DeepSetEncoder(c.code_size, c.inference_hidden, c.inference_hidden) if c.use_content else None
        self.q_y = InitialStatePosterior(
            c.code_size,
            n_frames=c.n_inference_frames,
            hidden_size=c.inference_hidden,
            n_layers=c.inference_layers,
            state_size=c.state_size,
        )
        self.q_z = FilteringPosterior(c.code_size, c.inference_hidden, c.noise_size) if c.use_noise else None
        prior = (
            ConditionalGaussianPrior(MLP(c.state_size, c.residual_hidden, 2 * c.noise_size, c.residual_layers))
            if c.use_noise
            else None
        )
        self.ssm = LatentSSM(self._make_cell(c), prior)
        self.prior_y0 = StandardNormal(c.state_size)

    @staticmethod
    def _make_cell(c: ModelConfig) -> TransitionCell:
        if c.transition == "mlp":
            return MLPCell(c.state_size, c.z_size, c.residual_hidden, c.residual_layers)
        if c.transition == "gru":
            return GRUCell(c.state_size, c.z_size)
        field = MLPField(c.state_size, c.z_size, c.residual_hidden, c.residual_layers)
        if c.integrator == "euler-ref":
            return ResidualCell(field, c.state_size, c.z_size, c.n_substeps)
        options: dict[str, Any] = {"adjoint": True} if c.adjoint else {}
        if c.integrator in TOLERANCE_METHODS:
            options.update(rtol=c.integrator_rtol, atol=c.integrator_atol)
        integrator = by_name(c.integrator, **options)
        return ODECell(field, integrator, c.state_size, c.z_size, c.n_substeps)

    def init_weights(self) -> SRVP:
        """The official initialisation (not run by the constructor, as in the official code).

        Convolutions N(0, 0.02²), BatchNorm scales N(1, 0.02²) and zero biases in the encoder and decoder; the
        residual function f gets orthogonal weights with gain ``residual_gain`` and zero biases; everything
        else keeps PyTorch's defaults.
        """
        init_conv_weights_(self.encoder)
        init_conv_weights_(self.decoder)
        cell = self.ssm.cell
        if isinstance(cell, (ResidualCell, ODECell)):
            init_orthogonal_(cell.field, self.config.residual_gain)
        elif isinstance(cell, MLPCell):
            init_orthogonal_(cell.net, self.config.residual_gain)
        return self

    # ---------------------------------------------------------------------------------------------- parts
    def _check_parameter_dtype(self, device_type: str) -> None:
        """The latent states stay float32 (see ``_state_precision``), so outside autocast the state model's
        parameters cannot be of a lower precision: say how to run in bf16 instead."""
        if autocast_enabled(device_type):
            return
        for p in self.ssm.parameters():
            if p.is_floating_point() and torch.promote_types(p.dtype, torch.float32) != p.dtype:
                raise TypeError(
                    f"model: SRVP keeps its latent states in float32 (they sum every sub-step's update), so its "
                    f"parameters cannot be {p.dtype}; keep the model in float32 and run in low precision under "
                    f"torch.autocast (with torch.autocast({device_type!r}, dtype=torch.bfloat16): ...; the CLIs' "
                    "--amp bf16) rather than model.to(torch.bfloat16) or model.half()"
                )

    def infer_content(self, codes: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor | None:
        """Content w from the codes of k frames per sequence (codes (T, B, Dh), indices (k, B)); (B, Dw)."""
        if self.content is None:
            return None
        t, b = codes.shape[:2]
        if indices is None:
            indices = self.content_indices(t, b, codes.device)
        return self.content(select_frames(codes, indices, check=False))

    def content_indices(self, n_frames: int, batch_size: int, device: torch.device) -> torch.Tensor:
        """k distinct random frames per sequence in training; the last k frames in eval mode. (k, B)."""
        k = self.config.n_inference_frames
        if self.training:
            return random_distinct_frames(n_frames, k, batch_size, device=device)
        return last_frames(n_frames, k, batch_size, device=device)

    def prediction_conditioning(self, enc: Encoded) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """What :meth:`predict` decodes every frame with, from the encoded conditioning frames ``enc`` (T_c
        frames of B sequences): the content w (B, Dw) of the last ``n_inference_frames`` frames (None without a
        content variable) and the skips of the last frame (B, C_i, H_i, W_i each; empty without skips)."""
        tc, b = enc.codes.shape[:2]
        device = enc.codes.device
        w = self.infer_content(enc.codes, last_frames(tc, self.config.n_inference_frames, b, device=device))
        skips, _ = self.skip_frames(enc, torch.full((b,), tc - 1, device=device))
        return w, skips

    def skip_frames(
        self, enc: Encoded, index: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Skips of one frame per sequence: random in training, the last one in eval mode. Each (B, C, H, W)."""
        if not enc.skips:
            return [], None
        t, b = enc.codes.shape[:2]
        if index is None:
            index = (
                torch.randint(t, (b,), device=enc.codes.device)
                if self.training
                else torch.full((b,), t - 1, device=enc.codes.device)
            )
        return [select_frames(s, index[None], check=False)[0] for s in enc.skips], index

    def decode(self, states: torch.Tensor, w: torch.Tensor | None, skips: list[torch.Tensor]) -> torch.Tensor:
        """Frames (T, B, C, H, W) from states (T, B, Dy), content w (B, Dw) and one frame's skips (B, ...)."""
        t = states.shape[0]
        h = states if w is None else torch.cat([repeat(w, "b d -> t b d", t=t), states], dim=-1)
        flat = rearrange(h, "t b d -> (t b) d")
        if skips and type(self.decoder) in (DCGANDecoder, VGGDecoder):  # (a subclass may not take skip_repeats)
            # Every frame of a sequence takes the same skips: the decoder computes their part once per sequence.
            out = self.decoder(flat, skips, skip_repeats=t)
        else:
            sk = [rearrange(repeat(s, "b c h w -> t b c h w", t=t), "t b c h w -> (t b) c h w") for s in skips]
            out = self.decoder(flat, sk or None)
        return rearrange(out, "(t b) c h w -> t b c h w", t=t)

    # ---------------------------------------------------------------------------------------------- passes
    def infer(
        self,
        x: torch.Tensor,
        n_frames: int | None = None,
        *,
        n_substeps: int | None = None,
        sample: bool = True,
        sampler: Sampler | None = None,
        decode_substeps: bool = False,
        content_indices: torch.Tensor | None = None,
        skip_index: torch.Tensor | None = None,
    ) -> SRVPOutput:
        """Posterior pass over x (the official ``forward``): y_0 and z from x, prior beyond the given frames.

        Args:
            x: given frames, (T, B, C, H, W) in [0, 1].
            n_frames: frames to generate, at least T (defaults to T); z beyond frame T−1 comes from the prior.
            n_substeps: sub-steps per frame (defaults to the configuration's).
            sample: sample latents (else means); ignored when ``sampler`` is given.
            sampler: custom noise (roles "y0", "z_posterior", "z_prior").
            decode_substeps: decode every sub-step state instead of frame times only.
            content_indices: frames used for w, (k, B) (default: random in training, last k in eval).
            skip_index: frame whose skips feed the decoder, (B,) (default: random / last).
        """
        t, b = self.check_frames(x)
        if t < self.config.n_inference_frames:  # q(y_0) and, in training, the content encoder read k frames
            raise ValueError(
                f"x: expected at least n_inference_frames={self.config.n_inference_frames} frames, got {t}"
            )
        n_frames = t if n_frames is None else check_positive_int(n_frames, "n_frames")
        if n_frames < t:
            raise ValueError(f"n_frames: expected at least the {t} given frames, got {n_frames}")
        draw = sampler if sampler is not None else default_sampler(sample)
        if content_indices is not None:  # user-given indices are checked here, once
            check_frame_indices(content_indices, t, b, "content_indices")
        if skip_index is not None:
            check_frame_indices(check_tensor(skip_index, "skip_index")[None], t, b, "skip_index")
        self._check_parameter_dtype(x.device.type)
        enc = self.encode(x)
        if content_indices is None and self.content is not None:
            content_indices = self.content_indices(t, b, x.device)
        w = self.infer_content(enc.codes, content_indices)
        q_y0 = self.q_y(enc.codes)
        y0 = _state_precision(draw(q_y0, "y0"))
        posterior = self.q_z(enc.codes) if self.q_z is not None and t > 1 else None
        roll = self.ssm.rollout(y0, n_frames, posterior=posterior, sampler=draw, n_substeps=n_substeps)
        skips, skip_index = self.skip_frames(enc, skip_index)
        frames = self.decode(roll.substates if decode_substeps else roll.states, w, skips)
        return SRVPOutput(frames, roll, q_y0, w, content_indices, skip_index)

    def loss_terms(self, x: torch.Tensor, out: SRVPOutput) -> ElboTerms:
        """Official loss terms of a posterior pass, computed in float32 (float64 for a float64 model), averaged over
        the batch.

        nll: Gaussian NLL (std obs_scale, constant included) summed over T, C, H, W; kl_y: KL(q(y_0) ‖ N(0, I));
        kl_z: Σ_t KL(q(z_t) ‖ p(z_t | y_{t−1})); residual: Σ over sub-steps of ‖Δt·f‖₂.
        """
        c = self.config
        frames = at_least_float32(out.frames)
        if frames.shape != x.shape:
            raise ValueError(
                f"out: decoded frames {list(frames.shape)} do not match x {list(x.shape)}; decode frame times only"
            )
        nll = gaussian_nll(at_least_float32(x), frames, c.obs_scale)
        kl_y = kl_per_sequence(float32_gaussian(out.q_y0), self.prior_y0(x.shape[1]))
        roll = out.rollout
        kl_z = (
            kl_per_sequence(float32_gaussian(roll.posterior), float32_gaussian(roll.prior), mask=roll.posterior_mask)
            if roll.posterior is not None and roll.prior is not None
            else None
        )
        residual = residual_penalty(at_least_float32(roll.residuals)) if roll.residuals is not None else None
        return elbo(nll, kl_y, kl_z, residual, beta_y=c.beta_y, beta_z=c.beta_z, residual_weight=c.residual_weight)

    def forward(self, x: torch.Tensor, **kwargs: object) -> tuple[ElboTerms, SRVPOutput]:
        """Training call: posterior pass over all of x (T, B, C, H, W) and the loss terms."""
        out = self.infer(x, **kwargs)  # type: ignore[arg-type]
        return self.loss_terms(x, out), out

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor, **kwargs: object) -> tuple[ElboTerms, SRVPOutput]: ...

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Reconstruction of x (T, B, C, H, W) from its own posterior, clamped to [0, 1]."""
        return self.infer(x, sample=sample).frames.clamp(0, 1)

    def predict(
        self,
        cond_frames: torch.Tensor,
        n_future: int,
        n_samples: int = 1,
        *,
        n_substeps: int | None = None,
        substep_frames: bool = False,
        sample: bool = True,
        sampler: Sampler | None = None,
        decode_cond: bool = True,
    ) -> Prediction:
        """Sample N futures of B sequences in one batched pass (the official test protocol).

        For every sample the posterior on the conditioning frames is re-sampled (new y_0 and z), using the
        training sub-step count; then z is drawn from the prior for ``n_future`` frames with ``n_substeps``
        sub-steps per frame (e.g. twice the training value for the paper's Δt/2). w and the skips come from
        the last conditioning frames. Frames are clamped to [0, 1].

        Args:
            cond_frames: conditioning frames, (T_c, B, C, H, W) with T_c >= k.
            n_future: frames to predict after the conditioning ones.
            n_samples: N futures per sequence.
            n_substeps: sub-steps per frame for the prediction (default: the training value).
            substep_frames: also decode every intermediate state (frames at times between frames).
            sample: sample latents, else use means.
            sampler: custom noise (roles "y0", "z_posterior", "z_prior"), drawing for N·B sequences.
            decode_cond: also decode the N reconstructions of the conditioning frames (``cond_frames``);
                False skips T_c·N·B decoder calls when only the future is needed (evaluation).
        """
        tc, _ = self.check_frames(cond_frames, "cond_frames")
        check_positive_int(n_future, "n_future")
        n = check_positive_int(n_samples, "n_samples")
        decode_cond = check_bool(decode_cond, "decode_cond")
        if tc < self.config.n_inference_frames:
            raise ValueError(
                f"cond_frames: expected at least n_inference_frames={self.config.n_inference_frames} frames, got {tc}"
            )
        draw = sampler if sampler is not None else default_sampler(sample)
        self._check_parameter_dtype(cond_frames.device.type)
        enc = self.encode(cond_frames)
        w, skips = self.prediction_conditioning(enc)
        # Every sample re-infers the posterior: tile the codes N times along the batch (sample-major).
        codes = repeat(enc.codes, "t b d -> t (n b) d", n=n)
        w_n = repeat(w, "b d -> (n b) d", n=n) if w is not None else None
        skips_n = [repeat(s, "b c h w -> (n b) c h w", n=n) for s in skips]
        y0 = _state_precision(draw(self.q_y(codes), "y0"))
        posterior = self.q_z(codes) if self.q_z is not None and tc > 1 else None
        cond = self.ssm.rollout(y0, tc, posterior=posterior, sampler=draw)
        future = self.ssm.rollout(cond.states[-1], n_future + 1, sampler=draw, n_substeps=n_substeps, t0=tc - 1)
        states = future.substates[1:] if substep_frames else future.states[1:]
        frames = self.decode(states, w_n, skips_n).clamp(0, 1)
        split = "t (n b) ... -> n t b ..."
        cond_rec = rearrange(self.decode(cond.states, w_n, skips_n).clamp(0, 1), split, n=n) if decode_cond else None
        return Prediction(
            rearrange(frames, split, n=n),
            cond_rec,
            rearrange(future.states[1:], split, n=n),
            cond,
            future,
        )


def _state_precision(y0: torch.Tensor) -> torch.Tensor:
    """y_0 in float32 at least: under bf16/fp16 autocast the networks run in low precision, but the states
    accumulate residuals over every sub-step and frame, so they stay float32 (y + Δt·f promotes to it)."""
    return y0.to(torch.promote_types(y0.dtype, torch.float32))


class SampleChunk(NamedTuple):
    """Samples ``start … start + n − 1`` of a prediction made chunk by chunk (see :func:`predict_in_chunks`).

    Attributes:
        start: index of the chunk's first sample among the N.
        prediction: the model's prediction for these n samples (``frames`` (n, T_f, B, C, H, W), ...).
    """

    start: int
    prediction: Prediction | SVGLPPrediction

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


class _ChunkedNoise:
    """Sampler that gives each chunk of samples its rows of the noise one batched call would draw.

    ``predict`` draws its noise in a fixed order of calls (y_0, the posterior z, one prior z per frame),
    each for all N·B rows at once (sample-major: row s·B + b is sample s of sequence b, rows on the last
    batch axis). While the first chunk runs, every call draws the standard normal ε of all N·B rows and keeps
    it; later chunks replay their rows of the kept ε (``loc + ε·scale``). So every sample gets the same ε
    whatever the chunk size. The kept noise is small: (draws × N·B × Dz) numbers, not frames.

    Where ε comes from:

    - without ``generators``, from the global generator of the device, as one ``rsample`` of the full shape
      draws it (the official test script's way): a sequence's noise then depends on the batch it is in and
      on its place there;
    - with ``generators`` (one per sequence, B), sequence b's ε of each call, (…, N, D), comes from
      ``generators[b]`` alone, drawn in float32 (float64 for a float64 model) on the generator's device and
      then moved to the model's device and dtype: a sequence's noise depends only on its generator's seed,
      not on the batch, the chunk size or the device the model runs on.
    """

    def __init__(self, n_rows: int, generators: Sequence[torch.Generator] | None = None) -> None:
        self.n_rows = n_rows
        self.generators = generators
        self.noise: list[tuple[str, torch.Tensor]] = []
        self.chunks = 0
        self.rows = slice(0, 0)
        self.calls = 0

    def start_chunk(self, rows: slice) -> None:
        self.chunks += 1
        self.rows = rows
        self.calls = 0

    def _draw(self, lead: tuple[int, ...], size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Standard normal ε of shape (*lead, N·B, size) for the first chunk."""
        if self.generators is None:
            return torch.empty((*lead, self.n_rows, size), dtype=dtype, device=device).normal_()
        n = self.n_rows // len(self.generators)
        precision = torch.promote_types(dtype, torch.float32)  # bf16 under autocast: drawn in float32
        per_sequence = [
            torch.randn((*lead, n, size), generator=g, dtype=precision, device=g.device) for g in self.generators
        ]
        eps = rearrange(torch.stack([e.to(device) for e in per_sequence], dim=-2), "... n b d -> ... (n b) d")
        return eps.to(dtype)

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        if not (isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)):
            raise TypeError(
                f"predict_in_chunks: chunked sampling replays Gaussian noise, got a {type(dist).__name__} for "
                f"{role!r}; pass chunk >= n_samples (and no generators) or a sampler"
            )
        loc, scale = dist.base_dist.loc, dist.base_dist.scale
        if self.chunks == 1:  # the first chunk draws every row's noise, as one predict call would
            self.noise.append((role, self._draw(tuple(loc.shape[:-2]), loc.shape[-1], loc.dtype, loc.device)))
        eps = self.noise[self.calls][1][..., self.rows, :] if self.calls < len(self.noise) else None
        if eps is None or self.noise[self.calls][0] != role or eps.shape != loc.shape:
            raise RuntimeError(
                f"predict_in_chunks: draw {self.calls} ({role!r}, shape {list(loc.shape)}) of chunk {self.chunks} "
                "does not match the first chunk's draws"
            )
        self.calls += 1
        return loc + eps * scale


def predict_in_chunks(
    model: FrameModel,
    cond_frames: torch.Tensor,
    n_future: int,
    n_samples: int,
    chunk: int,
    *,
    n_substeps: int | None = None,
    substep_frames: bool = False,
    sample: bool = True,
    sampler: Sampler | None = None,
    decode_cond: bool | Literal["first"] = False,
    generators: Sequence[torch.Generator] | None = None,
) -> Iterator[SampleChunk]:
    """``model.predict(cond_frames, n_future, n_samples)`` run ``chunk`` samples at a time, to bound memory.

    One ``predict`` call decodes N·B sequences at once, and its memory grows with N·B (the frames, the
    decoder's activations, the metrics computed on them); this yields the same N samples in chunks of at
    most ``chunk`` samples, i.e. at most ``chunk·B`` sequences per ``predict`` call, so that a caller can
    score each chunk and keep only what it needs (best-of-N scores, a few frames). Used by
    :func:`examples.srvp.evaluate.evaluate`, and meant for a training-time validation as well.

    The random draws do not depend on the chunk size: with ``sample=True`` and no ``sampler``, sample i gets
    the noise it would get from one ``predict`` call with the same global seed (the first chunk draws the
    noise of all N·B rows in ``predict``'s order and later chunks replay theirs, see ``_ChunkedNoise``), so
    results agree with the unchunked call up to floating-point rounding of batch-size-dependent kernels.
    With ``chunk >= n_samples`` it is exactly one ``predict`` call. A custom ``sampler`` is called once per
    chunk, for ``n·B`` rows.

    With ``generators`` (one ``torch.Generator`` per sequence), sequence b's noise for all N samples is drawn
    from ``generators[b]`` alone, in float32 on the generator's device (CPU generators: the same numbers
    whichever device the model runs on), and moved to the model's device: a sequence's samples then do not
    depend on the other sequences of the batch, on its place among them, nor on the chunk size. The global
    generator is not used for the noise.

    Args:
        model: an :class:`SRVP` or the SVG-LP baseline (anything with their ``predict``).
        cond_frames: conditioning frames, (T_c, B, C, H, W).
        n_future: frames to predict after the conditioning ones.
        n_samples: N futures per sequence.
        chunk: at most this many samples per ``predict`` call.
        n_substeps, substep_frames, sample, sampler: as in ``predict``.
        decode_cond: decode the reconstructions of the conditioning frames (``prediction.cond_frames``) for
            every sample (True), none (False), or only sample 0 (``"first"``, in a chunk of its own: what the
            official test script saves).
        generators: one generator per sequence (B) to draw each sequence's noise from (see above); None:
            the global generator, as one ``predict`` call. Only with ``sample=True`` and no ``sampler``.

    Yields:
        :class:`SampleChunk` in sample order, covering samples 0 … N − 1 once.

    Raises:
        TypeError, ValueError: wrong frames, ``n_samples`` or ``chunk`` not an int >= 1, ``decode_cond``
            not one of True, False, "first", or ``generators`` not B generators, or given with a ``sampler``
            or ``sample=False`` (``predict`` checks the other arguments). Raised at the first ``next()``, as
            the function is a generator.
    """
    _, b = model.check_frames(cond_frames, "cond_frames")
    n = check_positive_int(n_samples, "n_samples")
    size = check_positive_int(chunk, "chunk")
    if isinstance(decode_cond, str):
        if decode_cond != "first":
            raise ValueError(f"decode_cond: expected True, False or 'first', got {decode_cond!r}")
    else:  # 1 or "yes" would compare equal to True, or be read as False below
        decode_cond = check_bool(decode_cond, "decode_cond")
    sample = check_bool(sample, "sample")
    if generators is not None:
        _check_generators(generators, b, sampler=sampler, sample=sample)
    bounds = [0, 1] if decode_cond == "first" and n > 1 else [0]
    bounds += [*range(bounds[-1] + size, n, size), n]
    chunked = sampler is None and sample and (len(bounds) > 2 or generators is not None)
    noise = _ChunkedNoise(n * b, generators) if chunked else None
    for lo, hi in pairwise(bounds):
        if noise is not None:
            noise.start_chunk(slice(lo * b, hi * b))
        pred = model.predict(
            cond_frames,
            n_future,
            hi - lo,
            n_substeps=n_substeps,
            substep_frames=substep_frames,
            sample=sample,
            sampler=noise if noise is not None else sampler,
            decode_cond=decode_cond is True or (decode_cond == "first" and lo == 0),
        )
        yield SampleChunk(lo, pred)


def _check_generators(generators: object, batch_size: int, *, sampler: Sampler | None, sample: bool) -> None:
    """``generators``: a sequence of one torch.Generator per sequence, used only to draw samples."""
    if not isinstance(generators, Sequence) or not all(isinstance(g, torch.Generator) for g in generators):
        raise TypeError(
            f"generators: expected a list of torch.Generator, one per sequence, got {type(generators).__name__}"
        )
    if len(generators) != batch_size:
        raise ValueError(f"generators: expected one per sequence ({batch_size}), got {len(generators)}")
    if sampler is not None or not sample:
        raise ValueError("generators: they draw the samples' noise; pass them without a sampler and with sample=True")


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a half precision (autocast's outputs), else as it is: the loss terms are
    computed in float32, and in float64 for a float64 model (``.float()`` cut those to float32 digits)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def float32_gaussian(d: Independent | None) -> Independent:
    """The same diagonal Gaussian with its loc and scale in at least float32 (:func:`at_least_float32`)."""
    if d is None:
        raise ValueError("internal: expected a distribution, got None")
    base = d.base_dist
    loc, scale = at_least_float32(base.loc), at_least_float32(base.scale)
    return diag_gaussian(loc, scale, validate_args=False)  # a valid one, recast


def build_model(config: ModelConfig) -> FrameModel:
    """The model a configuration describes: :class:`SRVP`, or the SVG-LP baseline for ``family="svglp"``."""
    if config.family == "svglp":
        from examples.srvp.svglp import SVGLP

        return SVGLP(config)
    return SRVP(config)
