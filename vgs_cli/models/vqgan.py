"""The spectrogram codebook: a taming-transformers VQGAN autoencoder on 1x80xT mels.

Encoder: conv_in, per level `num_res_blocks` ResNet blocks (+ attention at the levels in `attn_levels`) and a
stride-2 conv (all but the last level), a middle block (ResNet, attention, ResNet), GroupNorm + swish + conv
to z_channels. The decoder mirrors it with one more ResNet block per level and nearest-neighbour upsampling.
A 1x80x848 input maps to a 5x53 grid of `embed_dim` vectors, each replaced by its nearest of `n_embed` codes.
Parameter names are the official ones (`encoder.down.<i>.block.<j>.conv1.weight`, `quantize.embedding.weight`,
`quant_conv`, `post_quant_conv`, ...) so official weights load 1:1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vgs_cli.config.codebook import VQGANConfig
from vgs_cli.models.quantize import VectorQuantizer


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv twice plus a (1x1 when the width changes) shortcut: `[B, Cin, H, W] -> [B, Cout, H, W]`."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, residual: `[B, C, H, W] -> [B, C, H, W]`."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(hn), self.k(hn), self.v(hn)))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v, as the reference
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after asymmetric (right/bottom) zero padding: `[B, C, H, W] -> [B, C, H/2, W/2]`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: `[B, C, H, W] -> [B, C, 2H, 2W]`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, cfg: VQGANConfig) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, cfg.norm_groups, cfg.dropout)
    mid.attn_1 = AttnBlock(channels, cfg.norm_groups)
    mid.block_2 = ResnetBlock(channels, channels, cfg.norm_groups, cfg.dropout)
    return mid


def _run_blocks(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The residual blocks of one encoder/decoder level, each followed by its attention where the level has it."""
    for j, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[j](h)
    return h


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    """`Tensor[B, 1, 80, T] -> Tensor[B, z_channels, 80/16, T/16]`."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level = nn.Module()
            cin, cout = cfg.ch * in_mult[i], cfg.ch * mult
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.block.append(ResnetBlock(cin, cout, g, cfg.dropout))
                cin = cout
                if i in cfg.attn_levels:
                    level.attn.append(AttnBlock(cout, g))
            if i != cfg.num_levels - 1:
                level.downsample = Downsample(cout)
            self.down.append(level)
        top = cfg.ch * cfg.ch_mult[-1]
        self.mid = _mid(top, cfg)
        self.norm_out = _norm(top, g)
        self.conv_out = nn.Conv2d(top, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_blocks(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """`Tensor[B, z_channels, 5, T/16] -> Tensor[B, 1, 80, T]`."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        g = cfg.norm_groups
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _mid(cin, cfg)
        levels: list[nn.Module] = []
        for i in reversed(range(cfg.num_levels)):
            level = nn.Module()
            cout = cfg.ch * cfg.ch_mult[i]
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(ResnetBlock(cin, cout, g, cfg.dropout))
                cin = cout
                if i in cfg.attn_levels:
                    level.attn.append(AttnBlock(cout, g))
            if i != 0:
                level.upsample = Upsample(cout)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # indexed by level, like the encoder (up.4 runs first)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_mid(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = _run_blocks(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQGAN(nn.Module):
    """Encoder -> 1x1 conv -> vector quantiser -> 1x1 conv -> decoder, on mels scaled to [-1, 1]."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=cfg.beta, beta_on=cfg.beta_on)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        f = self.cfg.downsample
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels or x.shape[2] != self.cfg.n_mels or x.shape[3] % f:
            raise ValueError(
                f"expected Tensor[B, {self.cfg.in_channels}, {self.cfg.n_mels}, T] with T a multiple of {f}, "
                f"got {tuple(x.shape)}"
            )

    def encode_pre_quant(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output before lookup: `Tensor[B, 1, 80, T] -> Tensor[B, embed_dim, 5, T/16]`."""
        self._check_input(x)
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`Tensor[B, 1, 80, T]` -> (zq `Tensor[B, embed_dim, 5, T/16]`, indices `Tensor[B, 5, T/16]`,
        loss terms {"loss", "codebook", "commitment"} (scalars))."""
        zq, terms, indices = self.quantize(self.encode_pre_quant(x))
        return zq, indices, terms

    def decode(self, zq: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, embed_dim, 5, T'] -> Tensor[B, 1, 80, 16 T']`."""
        return self.decoder(self.post_quant_conv(zq))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 5, T']` int -> `Tensor[B, 1, 80, 16 T']`."""
        return self.decode(self.quantize.lookup(indices.long()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`Tensor[B, 1, 80, T]` -> (xrec `Tensor[B, 1, 80, T]`, qloss scalar, info): info has "indices"
        `Tensor[B, 5, T/16]`, "z" (detached pre-quantisation vectors `Tensor[B, embed_dim, 5, T/16]`, for
        dead-code restarts), "codebook" and "commitment" (scalars)."""
        z = self.encode_pre_quant(x)
        zq, terms, indices = self.quantize(z)
        xrec = self.decode(zq)
        info = {"indices": indices, "z": z.detach(), "codebook": terms["codebook"], "commitment": terms["commitment"]}
        return xrec, terms["loss"], info

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output conv weight (where the adaptive GAN weight compares gradient norms)."""
        return self.decoder.conv_out.weight
