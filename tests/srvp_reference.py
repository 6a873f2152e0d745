"""An independent SRVP for regression tests: written from ``shared/SPEC.md`` alone (a clean-room reading of the
official code's facts), independently of ``examples/srvp/model.py``, whose code it neither reads nor imports.

Plain functional torch: every op reads its parameters from a flat state dict in the **official key layout**
(``encoder.conv.1.0.weight``, ``inf_z.weight_ih_l0``, ``dynamics.module.3.1.weight``, ...), e.g. the one
``examples.srvp.official.official_state_dict`` exports, or an official checkpoint. Tensors are time-major,
(T, B, ...). The noise is given explicitly, in the official call order: ε of y_0 (B, ny), then one ε per frame
transition (T−1, B, nz), the posterior ones first and the prior ones after.

What implements which section of SPEC.md:

- §1.1 conv blocks (conv, then BN, then LeakyReLU(0.2)) and MLPs (ReLU before every Linear but the first):
  :func:`batch_norm`, :func:`mlp`;
- §1.2 DCGAN64 / VGG64 encoders, skips deepest first: :func:`encode_dcgan`, :func:`encode_vgg`;
- §1.3 decoders, input [w, y], skips [h, skip] before each block, final sigmoid: :func:`decode_dcgan`,
  :func:`decode_vgg`; the frame that feeds the skips: :meth:`Reference.encode`;
- §1.4 content w (sum of ReLU projections, Linear, Tanh): :meth:`Reference.infer_w`;
- §1.5 q(y_0) from the first nt_inf codes concatenated in time order: :meth:`Reference.infer_y`;
- §1.6 the LSTM filter q(z_t) read at index t: :func:`lstm`, :meth:`Reference.generate`;
- §1.7 the prior p(z_t | y_{t−1}) on the last integer-time state: :meth:`Reference.generate`;
- §1.8 Euler sub-steps with an integer counter, z held over a frame transition, residuals dt·f:
  :meth:`Reference.generate`;
- §1.9 Gaussian parameters (mean first half, std softplus(raw) + 1e-8): :func:`gaussian`;
- §1.11 forward passes (training / validation) and §6 the test protocol (conditioning with the training dt, then
  the prior from the last conditioning state, frames clamped): :meth:`Reference.forward`, :meth:`Reference.predict`;
- §2 the loss (full Gaussian NLL summed over everything, KLs, non-squared L2 of dt·f, divided by B): :func:`loss`.

Only the SRVP that SPEC describes: no ablations (no content, no noise, MLP or GRU transitions), 64×64 frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]
Skips = list[torch.Tensor]
Gaussian = tuple[torch.Tensor, torch.Tensor]  # (mean, std)
Result = dict[str, Any]  # tensors, None where absent (no posterior step, no skips), "skips" a list

__all__ = ["Reference", "loss"]


# ------------------------------------------------------------------------------------------ §1.1, §1.9 blocks
def batch_norm(x: torch.Tensor, sd: StateDict, prefix: str, train: bool) -> torch.Tensor:
    """BatchNorm2d with PyTorch's defaults: batch statistics in training, running ones in eval mode."""
    mean, var = (None, None) if train else (sd[prefix + ".running_mean"], sd[prefix + ".running_var"])
    return F.batch_norm(x, mean, var, sd[prefix + ".weight"], sd[prefix + ".bias"], training=train, eps=1e-5)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def linear(x: torch.Tensor, sd: StateDict, prefix: str) -> torch.Tensor:
    return F.linear(x, sd[prefix + ".weight"], sd[prefix + ".bias"])


def mlp(x: torch.Tensor, sd: StateDict, prefix: str, n_layers: int) -> torch.Tensor:
    """Linear, then (ReLU, Linear) × (n_layers − 1); no output activation."""
    h = linear(x, sd, f"{prefix}.module.0.0")
    for i in range(1, n_layers):
        h = linear(F.relu(h), sd, f"{prefix}.module.{i}.1")
    return h


def gaussian(raw: torch.Tensor) -> Gaussian:
    """Mean = first half, std = softplus(second half) + 1e-8."""
    mean, raw_scale = raw.chunk(2, -1)
    return mean, F.softplus(raw_scale) + 1e-8


def vgg_block(h: torch.Tensor, sd: StateDict, prefix: str, train: bool) -> torch.Tensor:
    """3×3 s1 p1 conv, BN, LReLU."""
    return lrelu(batch_norm(F.conv2d(h, sd[prefix + ".0.weight"], padding=1), sd, prefix + ".1", train))


# ------------------------------------------------------------------------------------------ §1.2 encoders
def encode_dcgan(x: torch.Tensor, sd: StateDict, train: bool) -> tuple[torch.Tensor, Skips]:
    """Codes (N, nhx) and the four block outputs, deepest first."""
    h = lrelu(F.conv2d(x, sd["encoder.conv.0.0.weight"], stride=2, padding=1))  # no BN in the first block
    skips = [h]
    for i in (1, 2, 3):
        h = F.conv2d(h, sd[f"encoder.conv.{i}.0.weight"], stride=2, padding=1)
        h = lrelu(batch_norm(h, sd, f"encoder.conv.{i}.1", train))
        skips.append(h)
    h = torch.tanh(batch_norm(F.conv2d(h, sd["encoder.last_conv.0.weight"]), sd, "encoder.last_conv.1", train))
    return h.flatten(1), skips[::-1]


VGG_ENCODER_CONVS = {0: (0, 1), 1: (1, 2), 2: (1, 2, 3), 3: (1, 2, 3)}  # index 0 of blocks 1-3 is the MaxPool
VGG_DECODER_CONVS = {0: (0, 1, 2), 1: (0, 1, 2), 2: (0, 1)}


def encode_vgg(x: torch.Tensor, sd: StateDict, train: bool) -> tuple[torch.Tensor, Skips]:
    skips = []
    h = x
    for i, convs in VGG_ENCODER_CONVS.items():
        if i > 0:
            h = F.max_pool2d(h, 2, 2)
        for j in convs:
            h = vgg_block(h, sd, f"encoder.conv.{i}.{j}", train)
        skips.append(h)
    h = F.conv2d(F.max_pool2d(h, 2, 2), sd["encoder.last_conv.1.0.weight"])
    h = torch.tanh(batch_norm(h, sd, "encoder.last_conv.1.1", train))
    return h.flatten(1), skips[::-1]


# ------------------------------------------------------------------------------------------ §1.3 decoders
def decode_dcgan(inp: torch.Tensor, skips: Skips | None, sd: StateDict, train: bool) -> torch.Tensor:
    h = F.conv_transpose2d(inp[:, :, None, None], sd["decoder.first_upconv.0.weight"])
    h = lrelu(batch_norm(h, sd, "decoder.first_upconv.1", train))
    for i in range(4):
        if skips is not None:
            h = torch.cat([h, skips[i]], 1)
        if i < 3:
            h = F.conv_transpose2d(h, sd[f"decoder.conv.{i}.0.weight"], stride=2, padding=1)
            h = lrelu(batch_norm(h, sd, f"decoder.conv.{i}.1", train))
        else:  # last block: a bare transposed conv
            h = F.conv_transpose2d(h, sd["decoder.conv.3.weight"], stride=2, padding=1)
    return torch.sigmoid(h)


def decode_vgg(inp: torch.Tensor, skips: Skips | None, sd: StateDict, train: bool) -> torch.Tensor:
    h = F.conv_transpose2d(inp[:, :, None, None], sd["decoder.first_upconv.0.0.weight"])
    h = F.interpolate(lrelu(batch_norm(h, sd, "decoder.first_upconv.0.1", train)), scale_factor=2, mode="nearest")
    for i in range(4):
        if skips is not None:
            h = torch.cat([h, skips[i]], 1)
        if i < 3:
            for j in VGG_DECODER_CONVS[i]:
                h = vgg_block(h, sd, f"decoder.conv.{i}.{j}", train)
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        else:  # conv block, then a bare 3×3 transposed conv to the channels
            h = F.conv_transpose2d(
                vgg_block(h, sd, "decoder.conv.3.0", train), sd["decoder.conv.3.1.weight"], padding=1
            )
    return torch.sigmoid(h)


# ------------------------------------------------------------------------------------------ §1.6 LSTM
def lstm(x: torch.Tensor, sd: StateDict) -> torch.Tensor:
    """Single-layer LSTM ``inf_z`` over (T, B, nhx) from a zero state; outputs (T, B, nh_inf)."""
    hidden = sd["inf_z.weight_hh_l0"].shape[1]
    h = x.new_zeros(x.shape[1], hidden)
    c = x.new_zeros(x.shape[1], hidden)
    outs = []
    for xt in x:
        gates = F.linear(xt, sd["inf_z.weight_ih_l0"], sd["inf_z.bias_ih_l0"]) + F.linear(
            h, sd["inf_z.weight_hh_l0"], sd["inf_z.bias_hh_l0"]
        )
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


# ------------------------------------------------------------------------------------------ the model
def _stack(items: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.stack(items) if items else None


class Reference:
    """SRVP on an official-layout state dict ``sd``, with the official constructor options that the weights'
    shapes do not fix: ``archi`` ("dcgan" or "vgg"), ``nt_inf`` (k), ``nlayers_inf``, ``nlayers_res`` and
    ``skipco``. Results are dicts of tensors (keys as in the official ``forward``, plus ``sub``: every sub-step
    state, and ``skips``)."""

    def __init__(
        self, sd: StateDict, archi: str, nt_inf: int, nlayers_inf: int = 3, nlayers_res: int = 4, skipco: bool = False
    ) -> None:
        if archi not in ("dcgan", "vgg"):
            raise ValueError(f"archi: {archi!r}")
        self.sd, self.archi, self.nt_inf = sd, archi, nt_inf
        self.nlayers_inf, self.nlayers_res, self.skipco = nlayers_inf, nlayers_res, skipco

    def encode(
        self, x: torch.Tensor, train: bool, skip_idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Skips | None]:
        """Codes (T, B, nhx) of all T·B frames at once (one BN batch), and the skips of one frame per sequence:
        ``skip_idx`` (B,), by default the last frame (the eval-mode choice; training draws it at random)."""
        t, b = x.shape[:2]
        encoder = encode_vgg if self.archi == "vgg" else encode_dcgan
        h, skips = encoder(x.flatten(0, 1), self.sd, train)
        if not self.skipco:
            return h.view(t, b, -1), None
        if skip_idx is None:
            skip_idx = torch.full((b,), t - 1, dtype=torch.long)
        return h.view(t, b, -1), [s.view(t, b, *s.shape[1:])[skip_idx, torch.arange(b)] for s in skips]

    def decode(self, w: torch.Tensor, y: torch.Tensor, skips: Skips | None, train: bool) -> torch.Tensor:
        """Frames (T, B, C, H, W) from states y (T, B, ny), w (B, nh_inf) and one frame's skips, shared over T."""
        t, b = y.shape[:2]
        inp = torch.cat([w.expand(t, -1, -1), y], -1).flatten(0, 1)
        if skips is not None:
            skips = [s.expand(t, *s.shape).flatten(0, 1) for s in skips]
        decoder = decode_vgg if self.archi == "vgg" else decode_dcgan
        out = decoder(inp, skips, self.sd, train)
        return out.view(t, b, *out.shape[1:])

    def infer_w(self, hx: torch.Tensor, w_idx: torch.Tensor | None = None) -> torch.Tensor:
        """w from the codes of frames ``w_idx`` (nt_inf, B); by default the last nt_inf frames (eval mode)."""
        selected = hx[-self.nt_inf :] if w_idx is None else hx[w_idx, torch.arange(hx.shape[1])[None]]
        return torch.tanh(linear(F.relu(linear(selected, self.sd, "w_proj.0")).sum(0), self.sd, "w_inf.0"))

    def infer_y(self, hx: torch.Tensor) -> Gaussian:
        """q(y_0) from the first nt_inf codes, concatenated frame 0 first."""
        return gaussian(mlp(hx[: self.nt_inf].permute(1, 0, 2).flatten(1), self.sd, "q_y", self.nlayers_inf))

    def generate(
        self, y0: torch.Tensor, hx: torch.Tensor | None, nt: int, n_steps: int, eps_z: torch.Tensor | None = None
    ) -> Result:
        """nt frame times from y0 with dt = 1/n_steps; z from the posterior for the frames in hx, else the prior.

        ``eps_z`` (nt − 1, B, nz): the noise of every transition (None: means)."""
        dt = 1.0 / n_steps
        n_given = 0 if hx is None else hx.shape[0]
        lstm_out = lstm(hx, self.sd) if hx is not None and n_given > 0 else None
        y = y0
        ys, subs, zs, res = [y0], [y0], [], []
        q_mean, q_std, p_mean, p_std = [], [], [], []
        for t in range(1, nt):  # the new z of transition t − 1 → t
            pm, ps = gaussian(mlp(y, self.sd, "p_z", self.nlayers_res))  # on the state at time t − 1
            p_mean.append(pm)
            p_std.append(ps)
            eps = torch.zeros_like(pm) if eps_z is None else eps_z[t - 1]
            if t < n_given:
                assert lstm_out is not None
                qm, qs = gaussian(linear(lstm_out[t], self.sd, "q_z"))
                q_mean.append(qm)
                q_std.append(qs)
                z = qm + qs * eps
            else:
                z = pm + ps * eps
            zs.append(z)
            for _ in range(n_steps):  # z held over the sub-steps
                r = dt * mlp(torch.cat([y, z], -1), self.sd, "dynamics", self.nlayers_res)
                res.append(r)
                y = y + r
                subs.append(y)
            ys.append(y)
        return {
            "y": torch.stack(ys),
            "sub": torch.stack(subs),
            "z": _stack(zs),
            "q_z_mean": _stack(q_mean),
            "q_z_std": _stack(q_std),
            "p_z_mean": _stack(p_mean),
            "p_z_std": _stack(p_std),
            "res": _stack(res),
        }

    def forward(
        self,
        x: torch.Tensor,
        nt: int,
        n_steps: int,
        train: bool,
        eps_y0: torch.Tensor | None = None,
        eps_z: torch.Tensor | None = None,
        w_idx: torch.Tensor | None = None,
        skip_idx: torch.Tensor | None = None,
    ) -> Result:
        """The official ``forward(x, nt, dt)``: posterior over x, prior beyond it, all nt frame times decoded.

        Training draws ``w_idx`` and ``skip_idx`` at random: pass them (default: the eval-mode frames)."""
        hx, skips = self.encode(x, train, skip_idx)
        w = self.infer_w(hx, w_idx)
        q_y0_mean, q_y0_std = self.infer_y(hx)
        y0 = q_y0_mean if eps_y0 is None else q_y0_mean + q_y0_std * eps_y0
        out = self.generate(y0, hx, nt, n_steps, eps_z)
        out.update(
            x_rec=self.decode(w, out["y"], skips, train), w=w, q_y0_mean=q_y0_mean, q_y0_std=q_y0_std, skips=skips
        )
        return out

    def predict(
        self,
        x_cond: torch.Tensor,
        nt_gen: int,
        n_train: int,
        n_test: int,
        eps_y0: torch.Tensor | None = None,
        eps_cond: torch.Tensor | None = None,
        eps_prior: torch.Tensor | None = None,
    ) -> tuple[Result, Result, torch.Tensor]:
        """The test protocol (eval mode): the conditioning pass with the training sub-steps, then the prior from
        its last state with ``n_test`` sub-steps up to ``nt_gen`` frames in all. Returns the conditioning pass,
        the future rollout (its first state is the last conditioning one) and the predicted frames, clamped.
        N samples of B sequences: pass x_cond tiled N times along the batch, and noise for N·B sequences."""
        nc = x_cond.shape[0]
        cond = self.forward(x_cond, nc, n_train, False, eps_y0, eps_cond)
        future = self.generate(cond["y"][-1], None, nt_gen - nc + 1, n_test, eps_prior)
        return cond, future, self.decode(cond["w"], future["y"][1:], cond["skips"], False).clamp(0, 1)


# ------------------------------------------------------------------------------------------ §2 loss
def kl_normal(m1: torch.Tensor, s1: torch.Tensor, m2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """KL(N(m1, s1²) ‖ N(m2, s2²)), elementwise."""
    return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def loss(
    x: torch.Tensor,
    out: Result,
    obs_scale: float,
    beta_y: float,
    beta_z: float,
    l2_res: float,
) -> dict[str, torch.Tensor]:
    """The official loss terms of a posterior pass ``out`` over all of x, each divided by B."""
    b = x.shape[1]
    nll = (0.5 * ((x - out["x_rec"]) / obs_scale) ** 2 + math.log(obs_scale) + 0.5 * math.log(2 * math.pi)).sum()
    q_mean, q_std = out["q_y0_mean"], out["q_y0_std"]
    kl_y0 = kl_normal(q_mean, q_std, torch.zeros_like(q_mean), torch.ones_like(q_std)).sum()
    kl_z = kl_normal(out["q_z_mean"], out["q_z_std"], out["p_z_mean"], out["p_z_std"]).sum()
    l2 = out["res"].norm(dim=-1).sum()  # not squared; each residual already holds dt
    total = nll + beta_y * kl_y0 + beta_z * kl_z + (l2_res * l2 if l2_res > 0 else 0)
    return {"nll": nll / b, "kl_y0": kl_y0 / b, "kl_z": kl_z / b, "l2_res": l2 / b, "total": total / b}
