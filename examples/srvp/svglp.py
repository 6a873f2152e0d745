"""SVG-LP (Denton & Fergus, ICML 2018), the image-autoregressive baseline, from the same latentdyn parts as SRVP.

SRVP's claim is that a latent model which never re-encodes its own frames samples faster than models that
feed every generated frame back through the encoder. SVG-LP ("Stochastic Video Generation with a Learned
Prior") is the reference such model; this module builds it from the encoder/decoder SRVP uses, so that
``benchmarks/sampling.py`` compares the two with everything else equal::

    x_{t-1} ──encoder──► h_{t-1} ─┬─ p(z_t | h_0..h_{t-1})                  (prior LSTM)
    x_t     ──encoder──► h_t ─────┼─ q(z_t | h_1..h_t)                      (posterior LSTM, training only)
                                  └─ ĥ_t = LSTM([h_{t-1}, z_t]) ──decoder(ĥ_t, skips)──► x̂_t
    generation: x̂_t ──encoder──► h_t ──► ...                               (every frame is re-encoded)

Shapes are time-first: frames (T, B, C, H, W), codes (T, B, Dh), noise (T−1, B, Dz).

Field mapping (SVG's ``train_svg_lp.py`` option -> :class:`~examples.srvp.config.ModelConfig` field;
:func:`SVGLPConfig` sets SVG's SM-MNIST values):

================================  ==========================  =====================================================
SVG option (SM-MNIST value)       ModelConfig field           role here
================================  ==========================  =====================================================
``image_width`` (64)              ``image_size``              frame size
``channels`` (1)                  ``channels``                frame channels
``model`` (dcgan)                 ``architecture``            DCGAN or VGG encoder/decoder
nf of the conv nets (64)          ``conv_width``              base conv width
``g_dim`` (128)                   ``code_size``               encoder code h, predictor output ĥ, decoder input
``z_dim`` (10)                    ``noise_size``              z_t
``rnn_size`` (256)                ``residual_hidden``         width of the frame-predictor LSTM
``rnn_size`` (256)                ``inference_hidden``        width of the posterior and prior LSTMs
``predictor_rnn_layers`` (2)      ``residual_layers``         LSTM layers of the frame predictor
``posterior/prior_rnn_layers`` 1  ``inference_layers``        LSTM layers of the posterior and of the prior
``n_past`` (5)                    ``n_inference_frames``      conditioning frames in training (see skips below)
``beta`` (1e-4)                   ``beta_z``                  weight of the KL term
skips (always on in SVG)          ``skip_connections``        encoder→decoder skips (True in SVG)
(MSE, i.e. σ = 1)                 ``obs_scale``               the MSE is divided by obs_scale² (1: SVG's loss)
(no z: SVG's deterministic net)   ``use_noise``               False drops z, the posterior and the prior
================================  ==========================  =====================================================

``n_substeps`` must be 1 (SVG-LP is discrete-time). ``state_size``, ``residual_gain``, ``transition``,
``integrator``, ``adjoint``, ``integrator_rtol``, ``integrator_atol``, ``use_content``, ``beta_y`` and
``residual_weight`` have no SVG-LP counterpart and are ignored (so that any preset can be trained with
``--family svglp``, with ``--n-substeps 1`` for the kth, human36m and bair presets, which take 2 sub-steps).
SVG trained with Adam at lr 2e-3
(β₁ = 0.9), batches of 100 and ``n_past + n_future = 5 + 10`` frames: ``python -m examples.srvp.train --preset
smmnist --family svglp --code-size 128 --noise-size 10 --residual-hidden 256 --residual-layers 2
--inference-hidden 256 --inference-layers 1 --skip-connections true --beta-z 1e-4 --lr 2e-3 --batch-size 100``.

Choices, and where this differs from SVG's code:

- Loss: SVG minimises Σ_t mean_{C,H,W}(x̂_t − x_t)² + β·Σ_t KL(q(z_t) ‖ p(z_t)) averaged over the batch. The
  ``nll`` term here is exactly that MSE (divided by ``obs_scale²``), which is the Gaussian NLL of std
  ``obs_scale·sqrt(C·H·W/2)`` without its constant; so ``beta_z = 1e-4`` is SVG's β. The KL goes through
  :func:`~latentdyn.objectives.kl_per_sequence`; ``kl_y`` and ``residual`` are 0 (SVG has neither).
- Gaussians: SVG's heads output a mean and a log-variance, std = exp(logvar/2); kept (via
  :func:`~latentdyn.distributions.diag_gaussian`) rather than SRVP's softplus.
- LSTMs: SVG's stacks of ``LSTMCell`` after a linear embedding are a multi-layer ``nn.LSTM`` after the same
  embedding (same equations and parameters); the frame predictor ends with Linear + tanh (the BatchNorm of its
  output is commented out in SVG's released ``lstm.py``). In training all steps run as one ``nn.LSTM`` call
  (teacher forcing makes every input known); in generation the same modules step once per frame.
- Skips: as SVG without ``--last_frame_skip`` (its SM-MNIST setting), the decoder's skips for frame t come from
  frame t−1 while t−1 is a conditioning frame, then from the last conditioning frame: in training with the
  first ``n_inference_frames`` frames as conditioning (SVG's ``n_past``), in generation with the given ones.
- Batching: all T·B training frames are encoded in one call (BatchNorm sees them together; SVG encodes frame by
  frame), and the N samples of ``predict`` run as one batch of N·B sequences, sample-major, as in SRVP.
- Convolutions: the DCGAN/VGG networks are SRVP's (no conv biases, as the official SRVP code); SVG's convs have
  biases. Initialisation (:meth:`SVGLP.init_weights`) is SVG's: conv and linear weights N(0, 0.02²) with zero
  biases, BatchNorm scales N(1, 0.02²); LSTMs keep PyTorch's defaults.
- Conditioning reconstructions (:attr:`SVGLPPrediction.cond_frames`): SVG does not decode the conditioning
  steps; here frames 1..T_c−1 are the decoded one-step predictions made with the posterior (what SRVP's
  ``cond_frames`` are for SRVP), and frame 0, which nothing predicts, is the decoder applied to the code of
  x_0 (an autoencoding, the same for every sample, so it does not sway a best-of-N choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange, reduce, repeat
from torch import nn
from torch.distributions import Independent

from examples.srvp.config import ModelConfig, check_config_type
from examples.srvp.model import FrameModel, SVGLPPrediction, at_least_float32, float32_gaussian
from latentdyn._checks import check_bool, check_positive_int, check_shape
from latentdyn._repr import fields_repr
from latentdyn.distributions import diag_gaussian
from latentdyn.encoders.conv import DCGANDecoder, DCGANEncoder, VGGDecoder, VGGEncoder, init_conv_weights_
from latentdyn.objectives import ElboTerms, elbo, kl_per_sequence
from latentdyn.ssm import Sampler, default_sampler

__all__ = [
    "SVGLP",
    "FramePredictor",
    "GaussianLSTM",
    "SVGLPConfig",
    "SVGLPOutput",
    "SVGLPPrediction",
]

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""(h, c) of a multi-layer LSTM, each (L, B, Dh')."""

SVG_SMMNIST: dict[str, Any] = dict(
    family="svglp",
    image_size=64,
    channels=1,
    conv_width=64,
    architecture="dcgan",
    code_size=128,
    noise_size=10,
    residual_hidden=256,
    residual_layers=2,
    inference_hidden=256,
    inference_layers=1,
    n_inference_frames=5,
    skip_connections=True,
    beta_z=1e-4,
    obs_scale=1.0,
    n_substeps=1,
)
"""SVG-LP's SM-MNIST model options as ModelConfig fields (see the module docstring for the mapping)."""


def SVGLPConfig(**overrides: Any) -> ModelConfig:  # named like the config class it stands for
    """SVG-LP's SM-MNIST configuration as a ``ModelConfig`` (``family="svglp"``), with ``overrides`` applied.

    Args:
        **overrides: any ``ModelConfig`` field, e.g. ``conv_width=16``.

    Returns:
        ``ModelConfig(family="svglp", code_size=128, noise_size=10, residual_hidden=256, residual_layers=2,
        inference_hidden=256, inference_layers=1, n_inference_frames=5, skip_connections=True, beta_z=1e-4, ...)``.
    """
    return ModelConfig(**{**SVG_SMMNIST, **overrides})


# --------------------------------------------------------------------------------------------- recurrent parts
class _EmbeddedLSTM(nn.Module):
    """SVG's recurrent block: a linear embedding, then a stack of LSTM layers; time-first."""

    def __init__(self, in_size: int, hidden_size: int, n_layers: int) -> None:
        super().__init__()
        self.in_size = check_positive_int(in_size, "in_size")
        self.embed = nn.Linear(in_size, check_positive_int(hidden_size, "hidden_size"))
        self.lstm = nn.LSTM(hidden_size, hidden_size, check_positive_int(n_layers, "n_layers"))

    def features(self, inputs: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """Top-layer outputs (T, B, Dh') and the final state for inputs (T, B, Din) from ``state`` (zeros if None)."""
        check_shape(inputs, "t b d", "inputs", d=self.in_size)
        out, new_state = self.lstm(self.embed(inputs), state)
        return out, new_state


class GaussianLSTM(_EmbeddedLSTM):
    """Recurrent diagonal Gaussian N(μ_t, exp(logvar_t / 2)) over z_t from inputs read up to step t.

    SVG's posterior q(z_t | x_{1..t}) (inputs: codes of frames 1..t) and learned prior p(z_t | x_{0..t−1})
    (inputs: codes of frames 0..t−1).

    Args:
        in_size: Din, size of each input (the frame code, Dh).
        hidden_size: LSTM width Dh'.
        n_layers: LSTM layers.
        noise_size: Dz.
    """

    def __init__(self, in_size: int, hidden_size: int, n_layers: int, noise_size: int) -> None:
        super().__init__(in_size, hidden_size, n_layers)
        self.noise_size = check_positive_int(noise_size, "noise_size")
        self.head = nn.Linear(hidden_size, 2 * noise_size)

    def forward(self, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[Independent, LSTMState]:
        """Gaussians of z for every step of inputs (T, B, Din): batch (T, B), event (Dz,); and the final state."""
        out, new_state = self.features(inputs, state)
        mu, logvar = self.head(out).chunk(2, dim=-1)
        return diag_gaussian(mu, torch.exp(0.5 * logvar), validate_args=False), new_state

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[Independent, LSTMState]: ...


class FramePredictor(_EmbeddedLSTM):
    """Frame-code predictor ĥ_t = tanh(W · LSTM(embed([h_{t−1}, z_t]))).

    Args:
        in_size: Din = Dh + Dz.
        hidden_size: LSTM width Dh'.
        n_layers: LSTM layers.
        code_size: Dh, size of the predicted code (the decoder input).
    """

    def __init__(self, in_size: int, hidden_size: int, n_layers: int, code_size: int) -> None:
        super().__init__(in_size, hidden_size, n_layers)
        self.out = nn.Sequential(nn.Linear(hidden_size, check_positive_int(code_size, "code_size")), nn.Tanh())

    def forward(self, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Predicted codes (T, B, Dh) for inputs (T, B, Din), and the final state."""
        out, new_state = self.features(inputs, state)
        return self.out(out), new_state

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, inputs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]: ...


# ------------------------------------------------------------------------------------------------------ results
@dataclass(eq=False)  # (tensor fields: == raised)
class SVGLPOutput:
    """Result of :meth:`SVGLP.infer` (a teacher-forced pass over the given frames).

    Attributes:
        frames: one-step predictions of frames 1..T−1, (T−1, B, C, H, W).
        codes: encoder codes of all frames, (T, B, Dh).
        predicted_codes: predictor outputs ĥ_1..ĥ_{T−1} (the decoder inputs), (T−1, B, Dh).
        z: the noise that drove each prediction, (T−1, B, Dz) (Dz = 0 without noise).
        posterior: q(z_t | x_{1..t}) for t = 1..T−1, batch (T−1, B), or None without noise.
        prior: p(z_t | x_{0..t−1}) for t = 1..T−1, batch (T−1, B), or None without noise.
        skip_index: frame whose skips fed the decoder for each predicted frame, (T−1,).
    """

    frames: torch.Tensor
    codes: torch.Tensor
    predicted_codes: torch.Tensor
    z: torch.Tensor
    posterior: Independent | None
    prior: Independent | None
    skip_index: torch.Tensor

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


# -------------------------------------------------------------------------------------------------------- model
class SVGLP(FrameModel):
    """SVG-LP: stochastic video generation with a learned prior, an image-autoregressive latent model.

    Same interface as :class:`~examples.srvp.model.SRVP` (``init_weights``, ``forward`` -> loss terms,
    ``predict``), so that training, validation, evaluation and the benchmarks run it unchanged.

    Args:
        config: a ``ModelConfig`` with ``family="svglp"`` (see :func:`SVGLPConfig`) and ``n_substeps=1``.

    Raises:
        TypeError: ``config`` is not a ``ModelConfig``.
        ValueError: ``config.family`` is not ``"svglp"`` or ``config.n_substeps`` is not 1.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_config_type(config, ModelConfig, "config")
        if config.family != "svglp":
            raise ValueError(
                f"config.family: expected 'svglp' for SVGLP, got {config.family!r}; build it with SVGLPConfig(...)"
            )
        if config.n_substeps != 1:
            raise ValueError(
                f"config.n_substeps: SVG-LP is discrete-time and needs n_substeps=1, got {config.n_substeps}; "
                "pass --n-substeps 1"
            )
        self.config = c = config
        enc_cls, dec_cls = (DCGANEncoder, DCGANDecoder) if c.architecture == "dcgan" else (VGGEncoder, VGGDecoder)
        self.encoder = enc_cls(
            image_size=c.image_size, channels=c.channels, base_width=c.conv_width, code_size=c.code_size
        )
        self.decoder = dec_cls(
            image_size=c.image_size,
            channels=c.channels,
            base_width=c.conv_width,
            in_features=c.code_size,
            skip=c.skip_connections,
        )
        self.predictor = FramePredictor(c.code_size + c.z_size, c.residual_hidden, c.residual_layers, c.code_size)
        self.posterior: GaussianLSTM | None = None
        self.prior: GaussianLSTM | None = None
        if c.use_noise:
            self.posterior = GaussianLSTM(c.code_size, c.inference_hidden, c.inference_layers, c.noise_size)
            self.prior = GaussianLSTM(c.code_size, c.inference_hidden, c.inference_layers, c.noise_size)

    def init_weights(self) -> SVGLP:
        """SVG's initialisation: conv and linear weights N(0, 0.02²), zero biases, BatchNorm scales N(1, 0.02²).

        LSTM weights keep PyTorch's defaults (SVG's initialiser does not match ``LSTMCell``). Returns self.
        """
        init_conv_weights_(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        return self

    # ---------------------------------------------------------------------------------------------- parts
    def decode(self, codes: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Frames (T, B, C, H, W) from codes (T, B, Dh) and per-frame skips, each (T, B, C_j, H_j, W_j) (or [])."""
        t = codes.shape[0]
        sk = [rearrange(s, "t b c h w -> (t b) c h w") for s in skips]
        out = self.decoder(rearrange(codes, "t b d -> (t b) d"), sk or None)
        return rearrange(out, "(t b) c h w -> t b c h w", t=t)

    @staticmethod
    def _noise_input(codes: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Predictor input [h_{t−1}, z_t] (T, B, Dh + Dz) from codes (T, B, Dh) and z (T, B, Dz), Dz possibly 0."""
        return torch.cat([codes, z.to(codes.dtype)], dim=-1)

    # ---------------------------------------------------------------------------------------------- passes
    def infer(
        self,
        x: torch.Tensor,
        *,
        n_cond: int | None = None,
        sample: bool = True,
        sampler: Sampler | None = None,
    ) -> SVGLPOutput:
        """Teacher-forced pass over x (SVG's training pass): predict every frame t ≥ 1 from frame t−1 and q(z_t).

        Args:
            x: frames, (T, B, C, H, W) in [0, 1], T >= 2.
            n_cond: frames treated as conditioning for the skips (SVG's ``n_past``; default
                ``min(n_inference_frames, T)``): frame t takes the skips of frame min(t−1, n_cond−1).
            sample: sample z from the posterior (else its mean); ignored when ``sampler`` is given.
            sampler: custom noise (role "z_posterior").

        Raises:
            ValueError: x has the wrong shape or fewer than 2 frames, or n_cond is not in [1, T].
        """
        t, b = self.check_frames(x)
        if t < 2:
            raise ValueError(f"x: SVG-LP predicts frame t from frame t−1 and needs at least 2 frames, got {t}")
        if n_cond is None:
            n_cond = min(self.config.n_inference_frames, t)
        elif check_positive_int(n_cond, "n_cond") > t:
            raise ValueError(f"n_cond: expected at most the {t} given frames, got {n_cond}")
        draw = sampler if sampler is not None else default_sampler(sample)
        enc = self.encode(x)
        previous = enc.codes[:-1]
        q = p = None
        if self.posterior is not None and self.prior is not None:
            q, _ = self.posterior(enc.codes[1:])
            p, _ = self.prior(previous)
            z = draw(q, "z_posterior")
        else:
            z = previous.new_zeros(t - 1, b, 0)
        predicted, _ = self.predictor(self._noise_input(previous, z))
        skip_index = torch.arange(t - 1, device=x.device).clamp(max=n_cond - 1)
        frames = self.decode(predicted, [s[skip_index] for s in enc.skips])
        return SVGLPOutput(frames, enc.codes, predicted, z, q, p, skip_index)

    def loss_terms(self, x: torch.Tensor, out: SVGLPOutput) -> ElboTerms:
        """SVG's loss terms of a teacher-forced pass, in float32 (float64 for a float64 model), averaged over the
        batch.

        nll: Σ_{t≥1} mean over C, H, W of (x̂_t − x_t)², divided by obs_scale²; kl_z: Σ_t KL(q(z_t) ‖ p(z_t));
        kl_y = residual = 0; total = nll + beta_z · kl_z.

        Raises:
            ValueError: the predicted frames do not match x[1:].
        """
        target = at_least_float32(x[1:])
        pred = at_least_float32(out.frames)
        if pred.shape != target.shape:
            raise ValueError(
                f"out: predicted frames {list(pred.shape)} do not match frames 1..T−1 of x {list(target.shape)}"
            )
        nll = reduce((pred - target).square(), "t b c h w -> t b", "mean").sum(0) / self.config.obs_scale**2
        kl_z = (
            kl_per_sequence(float32_gaussian(out.posterior), float32_gaussian(out.prior))
            if out.posterior is not None and out.prior is not None
            else None
        )
        return elbo(nll, None, kl_z, None, beta_z=self.config.beta_z, residual_weight=0.0)

    def forward(
        self, x: torch.Tensor, *, n_cond: int | None = None, sample: bool = True, sampler: Sampler | None = None
    ) -> tuple[ElboTerms, SVGLPOutput]:
        """Training call: teacher-forced pass over x (T, B, C, H, W) and the loss terms (see :meth:`infer`)."""
        out = self.infer(x, n_cond=n_cond, sample=sample, sampler=sampler)
        return self.loss_terms(x, out), out

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(
            self, x: torch.Tensor, *, n_cond: int | None = None, sample: bool = True, sampler: Sampler | None = None
        ) -> tuple[ElboTerms, SVGLPOutput]: ...

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
    ) -> SVGLPPrediction:
        """Sample N futures of B sequences, all N·B in one batch (sample-major), frame by frame.

        The conditioning frames are encoded once; every sample then runs the posterior, prior and predictor
        LSTMs over them (its own z), and generates: z_t ~ p(z_t | ·), ĥ_t = predictor([h_{t−1}, z_t]),
        x̂_t = decoder(ĥ_t, skips of the last conditioning frame), and h_t = encoder(x̂_t) re-encodes the
        generated frame for the next step, T_f − 1 encoder calls of N·B frames in all.

        Args:
            cond_frames: conditioning frames, (T_c, B, C, H, W) with T_c >= 1.
            n_future: frames to predict after the conditioning ones.
            n_samples: N futures per sequence.
            n_substeps: only None or 1 (SVG-LP is discrete-time).
            substep_frames: only False.
            sample: sample z (else means); ignored when ``sampler`` is given.
            sampler: custom noise (roles "z_posterior", "z_prior"), drawing for N·B sequences.
            decode_cond: also decode the reconstructions of the conditioning frames (``cond_frames``).

        Raises:
            ValueError: sub-steps asked for, a wrong frame shape, or n_future / n_samples below 1.
        """
        if n_substeps is not None and n_substeps != 1:
            raise ValueError(f"n_substeps: SVG-LP is discrete-time (one step per frame), got n_substeps={n_substeps}")
        if substep_frames:
            raise ValueError("substep_frames: SVG-LP is discrete-time and has no frames between frames")
        tc, b = self.check_frames(cond_frames, "cond_frames")  # T_c, B >= 1
        n_future = check_positive_int(n_future, "n_future")
        n = check_positive_int(n_samples, "n_samples")
        decode_cond = check_bool(decode_cond, "decode_cond")
        draw = sampler if sampler is not None else default_sampler(sample)
        enc = self.encode(cond_frames)

        def tile(v: torch.Tensor) -> torch.Tensor:
            return repeat(v, "t b ... -> t (n b) ...", n=n)

        codes = tile(enc.codes)  # (T_c, N·B, Dh)
        # Frame 0: nothing predicts it; the decoder applied to its own code (the same for every sample).
        recs = [tile(self.decode(enc.codes[:1], [s[:1] for s in enc.skips]))] if decode_cond else []
        prior_state: LSTMState | None = None
        pred_state: LSTMState | None = None
        if tc > 1:  # conditioning steps 1..T_c−1: z from the posterior, skips from the previous frame
            if self.posterior is not None and self.prior is not None:
                q, _ = self.posterior(codes[1:])
                _, prior_state = self.prior(codes[:-1])
                z_c = draw(q, "z_posterior")
            else:
                z_c = codes.new_zeros(tc - 1, n * b, 0)
            predicted, pred_state = self.predictor(self._noise_input(codes[:-1], z_c), pred_state)
            if decode_cond:
                recs.append(self.decode(predicted, [tile(s[:-1]) for s in enc.skips]))
        last_skips = [tile(s[-1:]) for s in enc.skips]  # (1, N·B, C_j, H_j, W_j)
        h = codes[-1:]  # (1, N·B, Dh): the code of the last conditioning frame
        frames: list[torch.Tensor] = []
        future_codes: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        for step in range(n_future):
            if step > 0:  # re-encode the frame just generated: the image-autoregressive loop
                h = self.encode(frames[-1]).codes
            if self.prior is not None:
                p, prior_state = self.prior(h, prior_state)
                z = draw(p, "z_prior")
            else:
                z = h.new_zeros(1, n * b, 0)
            predicted, pred_state = self.predictor(self._noise_input(h, z), pred_state)
            frames.append(self.decode(predicted, last_skips))
            future_codes.append(predicted)
            zs.append(z)
        split = "t (n b) ... -> n t b ..."
        return SVGLPPrediction(
            rearrange(torch.cat(frames), split, n=n).clamp(0, 1),
            rearrange(torch.cat(recs), split, n=n).clamp(0, 1) if recs else None,
            rearrange(torch.cat(future_codes), split, n=n),
            rearrange(torch.cat(zs), split, n=n),
        )
