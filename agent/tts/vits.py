"""VITS inference in torch, for Piper-format voices: written for voxloop from the VITS paper's
architecture (Kim et al., 2021); Piper's own model code is GPL-3.0 and is not used.

The parts, in the order a sentence goes through them:
- ``TextEncoder``: phoneme embedding, 6 transformer layers with windowed relative-position attention,
  a projection to the prior's mean and log-scale per phoneme;
- ``DurationPredictor``: the stochastic duration predictor run backwards (noise -> log-durations)
  through rational-quadratic spline flows;
- expansion of the prior to frames by the (ceiled) durations;
- ``Flow``: four mean-only affine coupling layers with WaveNet-style conditioning, run backwards;
- ``Decoder``: a HiFi-GAN generator (x8, x8, x4 upsampling, 256 samples per frame).

The front end (text encoder, durations) runs eagerly; the flow and the decoder take a fixed frame count
(``synthesize_frames``) so that, padded to a bucket, their shapes are static: that is what CUDA Graph
capture needs. ``VitsWeights.from_onnx`` reads the weights out of a Piper ONNX file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1


@dataclass(frozen=True, slots=True)
class VitsConfig:
    n_symbols: int = 256
    hidden: int = 192
    filter: int = 768
    heads: int = 2
    layers: int = 6
    window: int = 4
    inter: int = 192
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_kernels: tuple[int, ...] = (16, 16, 8)
    upsample_initial: int = 256
    resblock_kernels: tuple[int, ...] = (3, 5, 7)
    resblock_dilations: tuple[tuple[int, int], ...] = ((1, 2), (2, 6), (3, 12))
    hop: int = 256  # the product of upsample_rates


def sequence_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of (batch, channels, time)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, -1), (x.shape[1],), self.gamma, self.beta, 1e-5)
        return y.transpose(1, -1)


# -- text encoder -------------------------------------------------------------------------------------
class RelativeAttention(nn.Module):
    def __init__(self, channels: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.d = channels // heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window + 1, self.d))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window + 1, self.d))

    def _relative(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """The table's rows for offsets -(length-1) .. length-1 (zeros beyond the window)."""
        pad = max(length - (self.window + 1), 0)
        start = max((self.window + 1) - length, 0)
        padded = F.pad(table, (0, 0, pad, pad)) if pad else table
        return padded[:, start : start + 2 * length - 1]

    @staticmethod
    def _to_absolute(x: torch.Tensor) -> torch.Tensor:
        """(b, h, l, 2l-1) relative logits -> (b, h, l, l) absolute."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, 1)).reshape(b, h, 2 * length * length)
        x = F.pad(x, (0, length - 1)).reshape(b, h, length + 1, 2 * length - 1)
        return x[:, :, :length, length - 1 :]

    @staticmethod
    def _to_relative(x: torch.Tensor) -> torch.Tensor:
        """(b, h, l, l) absolute weights -> (b, h, l, 2l-1) relative."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, length - 1)).reshape(b, h, length * (2 * length - 1))
        x = F.pad(x, (length, 0)).reshape(b, h, length, 2 * length)
        return x[:, :, :, 1:]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, self.heads, self.d, t).transpose(2, 3)

        q = heads(self.conv_q(x)) / math.sqrt(self.d)
        k, v = heads(self.conv_k(x)), heads(self.conv_v(x))
        scores = q @ k.transpose(-2, -1)
        scores = scores + self._to_absolute(
            q @ self._relative(self.emb_rel_k, t).transpose(-2, -1).unsqueeze(0)
        )
        scores = scores.masked_fill(~mask, -1e4)
        p = torch.softmax(scores, dim=-1)
        out = p @ v + self._to_relative(p) @ self._relative(self.emb_rel_v, t).unsqueeze(0)
        result: torch.Tensor = self.conv_o(out.transpose(2, 3).reshape(b, c, t))
        return result


class FeedForward(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel, padding=kernel // 2)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(x * mask))
        out: torch.Tensor = self.conv_2(x * mask) * mask
        return out


class Encoder(nn.Module):
    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(
            RelativeAttention(cfg.hidden, cfg.heads, cfg.window) for _ in range(cfg.layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelNorm(cfg.hidden) for _ in range(cfg.layers))
        self.ffn_layers = nn.ModuleList(FeedForward(cfg.hidden, cfg.filter) for _ in range(cfg.layers))
        self.norm_layers_2 = nn.ModuleList(ChannelNorm(cfg.hidden) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn_mask = mask.unsqueeze(2) & mask.unsqueeze(-1)  # (b, 1, t, t)
        fmask = mask.to(x.dtype)
        x = x * fmask
        for attn, n1, ffn, n2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = n1(x + attn(x, attn_mask))
            x = n2(x + ffn(x, fmask))
        return x * fmask


class TextEncoder(nn.Module):
    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        self.hidden = cfg.hidden
        self.emb = nn.Embedding(cfg.n_symbols, cfg.hidden)
        self.encoder = Encoder(cfg)
        self.proj = nn.Conv1d(cfg.hidden, 2 * cfg.inter, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (self.emb(ids) * math.sqrt(self.hidden)).transpose(1, 2)
        mask = sequence_mask(lengths, ids.shape[1]).unsqueeze(1)  # (b, 1, t) bool
        x = self.encoder(x, mask)
        m, logs = torch.chunk(self.proj(x) * mask, 2, dim=1)
        return x, m, logs, mask


# -- durations ----------------------------------------------------------------------------------------
class DilatedSeparableConvs(nn.Module):
    def __init__(self, channels: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.convs_sep = nn.ModuleList(
            nn.Conv1d(
                channels,
                channels,
                kernel,
                groups=channels,
                dilation=kernel**i,
                padding=(kernel**i * (kernel - 1)) // 2,
            )
            for i in range(layers)
        )
        self.convs_1x1 = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in range(layers))
        self.norms_1 = nn.ModuleList(ChannelNorm(channels) for _ in range(layers))
        self.norms_2 = nn.ModuleList(ChannelNorm(channels) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        if g is not None:
            x = x + g
        for sep, n1, pw, n2 in zip(self.convs_sep, self.norms_1, self.convs_1x1, self.norms_2, strict=True):
            y = F.gelu(n1(sep(x * mask)))
            y = F.gelu(n2(pw(y)))
            x = x + y
        return x * mask


def rational_quadratic_inverse(
    y: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    bound: float,
    min_size: float = 1e-3,
    min_derivative: float = 1e-3,
) -> torch.Tensor:
    """The inverse of a monotone rational-quadratic spline on [-bound, bound] (identity outside),
    from unnormalised bin widths, heights and inner-knot derivatives (Durkan et al., 2019)."""
    bins = widths.shape[-1]
    inside = (y >= -bound) & (y <= bound)
    edge = math.log(math.exp(1.0 - min_derivative) - 1.0)  # softplus(edge) + min = 1: linear tails
    derivatives = F.pad(derivatives, (1, 1), value=edge)

    def knots(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = min_size + (1 - min_size * bins) * torch.softmax(raw, dim=-1)
        cum = F.pad(torch.cumsum(size, dim=-1), (1, 0))
        cum = 2 * bound * cum - bound
        cum = torch.cat(
            [torch.full_like(cum[..., :1], -bound), cum[..., 1:-1], torch.full_like(cum[..., :1], bound)], -1
        )
        return cum, cum[..., 1:] - cum[..., :-1]

    cum_w, w = knots(widths)
    cum_h, h = knots(heights)
    d = min_derivative + F.softplus(derivatives)
    yc = y.clamp(-bound, bound)
    search = cum_h.clone()
    search[..., -1] += 1e-6
    k = ((yc.unsqueeze(-1) >= search).sum(-1) - 1).clamp(0, bins - 1).unsqueeze(-1)

    def at(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, k).squeeze(-1)

    x0, wk, y0, hk = at(cum_w), at(w), at(cum_h), at(h)
    delta = hk / wk
    dk, dk1 = at(d), at(d[..., 1:])
    s = yc - y0
    a = s * (dk + dk1 - 2 * delta) + hk * (delta - dk)
    b = hk * dk - s * (dk + dk1 - 2 * delta)
    c = -delta * s
    root = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp_min(0)))
    return torch.where(inside, root * wk + x0, y)


class SplineFlow(nn.Module):
    """A coupling flow of 2 channels: the second is moved by a spline the first conditions."""

    def __init__(self, channels: int = 192, bins: int = 10, bound: float = 5.0) -> None:
        super().__init__()
        self.bins, self.bound, self.channels = bins, bound, channels
        self.pre = nn.Conv1d(1, channels, 1)
        self.convs = DilatedSeparableConvs(channels, 3, 3)
        self.proj = nn.Conv1d(channels, 3 * bins - 1, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, :1], x[:, 1:]
        h = self.proj(self.convs(self.pre(x0), mask, g)) * mask  # (b, 29, t)
        h = h.transpose(1, 2).unsqueeze(1)  # (b, 1, t, 29)
        scale = math.sqrt(self.channels)
        w, hh, d = (
            h[..., : self.bins] / scale,
            h[..., self.bins : 2 * self.bins] / scale,
            h[..., 2 * self.bins :],
        )
        x1 = rational_quadratic_inverse(x1, w, hh, d, self.bound)
        return torch.cat([x0, x1], dim=1) * mask


class AffineFlow(nn.Module):
    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def reverse(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.m) * torch.exp(-self.logs) * mask


class DurationPredictor(nn.Module):
    """VITS's stochastic duration predictor, inference direction only (flows 1 and the posterior
    encoder are training-only and absent from the weights)."""

    def __init__(self, channels: int = 192) -> None:
        super().__init__()
        self.pre = nn.Conv1d(channels, channels, 1)
        self.convs = DilatedSeparableConvs(channels, 3, 3)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.flows = nn.ModuleDict(
            {"0": AffineFlow(), "3": SplineFlow(), "5": SplineFlow(), "7": SplineFlow()}
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Log-durations (b, 1, t) from encoder output x and noise (b, 2, t)."""
        g = self.proj(self.convs(self.pre(x), mask)) * mask
        z = noise
        for name in ("7", "5", "3"):
            z = torch.flip(z, [1])
            z = self.flows[name].reverse(z, mask, g)  # type: ignore[operator]
        z = torch.flip(z, [1])
        z = self.flows["0"].reverse(z, mask)  # type: ignore[operator]
        logw: torch.Tensor = z[:, :1]
        return logw


# -- flow ---------------------------------------------------------------------------------------------
class WaveNet(nn.Module):
    def __init__(self, channels: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.channels = channels
        self.in_layers = nn.ModuleList(
            nn.Conv1d(channels, 2 * channels, kernel, padding=kernel // 2) for _ in range(layers)
        )
        self.res_skip_layers = nn.ModuleList(
            nn.Conv1d(channels, 2 * channels if i < layers - 1 else channels, 1) for i in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (conv, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            a = conv(x)
            acts = torch.tanh(a[:, : self.channels]) * torch.sigmoid(a[:, self.channels :])
            rs = res_skip(acts)
            if i < last:
                x = (x + rs[:, : self.channels]) * mask
                out = out + rs[:, self.channels :]
            else:
                out = out + rs
        return out * mask


class CouplingLayer(nn.Module):
    def __init__(self, channels: int = 192, hidden: int = 192) -> None:
        super().__init__()
        self.split = channels // 2
        self.pre = nn.Conv1d(self.split, hidden, 1)
        self.enc = WaveNet(hidden, 5, 4)
        self.post = nn.Conv1d(hidden, self.split, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, : self.split], x[:, self.split :]
        m = self.post(self.enc(self.pre(x0) * mask, mask)) * mask
        return torch.cat([x0, (x1 - m) * mask], dim=1)


class Flow(nn.Module):
    def __init__(self, channels: int = 192) -> None:
        super().__init__()
        self.flows = nn.ModuleDict({str(i): CouplingLayer(channels) for i in (0, 2, 4, 6)})

    def reverse(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for name in ("6", "4", "2", "0"):
            z = torch.flip(z, [1])
            z = self.flows[name].reverse(z, mask)  # type: ignore[operator]
        return z


# -- decoder ------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class Decoder(nn.Module):
    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(cfg.inter, cfg.upsample_initial, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = cfg.upsample_initial
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernels, strict=True):
            self.ups.append(
                nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
            )
            channels //= 2
            for k, dil in zip(cfg.resblock_kernels, cfg.resblock_dilations, strict=True):
                self.resblocks.append(ResBlock(channels, k, dil))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=False)
        self.per_up = len(cfg.resblock_kernels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(z)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.per_up : (i + 1) * self.per_up]
            x = sum((block(x) for block in blocks), torch.zeros_like(x)) / self.per_up
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


# -- the whole model ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Prior:
    """The front end's result for one sentence: the prior per frame and each phoneme's frames."""

    m: torch.Tensor  # (1, inter, frames)
    logs: torch.Tensor
    frames: int
    durations: npt.NDArray[np.int64]  # frames per input id


class Vits(nn.Module):
    def __init__(self, cfg: VitsConfig = VitsConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_p = TextEncoder(cfg)
        self.dp = DurationPredictor(cfg.hidden)
        self.flow = Flow(cfg.inter)
        self.dec = Decoder(cfg)

    @torch.inference_mode()
    def prior(
        self,
        ids: torch.Tensor,
        *,
        length_scale: float = 1.0,
        noise_w: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> Prior:
        """Text -> durations and the prior expanded to frames (one sentence, batch 1)."""
        lengths = torch.tensor([ids.shape[1]], device=ids.device)
        x, m, logs, mask = self.enc_p(ids, lengths)
        fmask = mask.to(x.dtype)
        noise = torch.randn(1, 2, ids.shape[1], generator=generator, device=ids.device) * noise_w
        logw = self.dp(x, fmask, noise)
        w = torch.ceil(torch.exp(logw) * fmask * length_scale)[0, 0]  # (t,)
        frames = max(int(w.sum().item()), 1)
        index = torch.repeat_interleave(torch.arange(ids.shape[1], device=ids.device), w.long())
        return Prior(m[:, :, index], logs[:, :, index], frames, w.long().cpu().numpy())

    @torch.inference_mode()
    def synthesize_frames(self, z_p: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The static-shape part: prior sample (b, inter, F) with ``frames`` valid per row -> audio
        (b, F * hop). Shapes depend only on F: a bucket's graph can be captured once."""
        mask = (
            (torch.arange(z_p.shape[2], device=z_p.device)[None, :] < frames[:, None])
            .unsqueeze(1)
            .to(z_p.dtype)
        )
        z = self.flow.reverse(z_p * mask, mask)
        audio: torch.Tensor = self.dec(z * mask)[:, 0]
        return audio


def weights_from_onnx(path: str) -> dict[str, torch.Tensor]:
    """The state dict of ``Vits`` from a Piper ONNX export. Most initializers keep their training
    names; three quirks: the phoneme embedding is stored as ``sid``, the flows' weight-normalised
    convs were folded into anonymous ``onnx::Conv_*`` tensors (named here by the Conv node that reads
    them), and the duration flow's ``logs`` was folded into the constant exp(-logs)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, array in tensors.items():
        if name == "sid":
            state["enc_p.emb.weight"] = torch.from_numpy(array.copy())
        elif name.split(".")[0] in ("enc_p", "dp", "flow", "dec"):
            state[name] = torch.from_numpy(array.copy())
    for node in graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1].startswith("onnx::Conv_"):
            module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            state[f"{module}.weight"] = torch.from_numpy(tensors[node.input[1]].copy())
    folded = tensors.get("/dp/flows.0/Exp_output_0")
    if folded is not None:
        state["dp.flows.0.logs"] = torch.from_numpy(-np.log(folded.astype(np.float64)).astype(np.float32))
    return state


def load_vits(path: str, cfg: VitsConfig = VitsConfig()) -> Vits:
    model = Vits(cfg)
    state = weights_from_onnx(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval()
