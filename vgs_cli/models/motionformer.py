"""MotionFormer: Synchformer's video branch (ViT-B/16 with divided space-time attention on 2-frame tubelets).

Parameter names are those of `vfeat_extractor.*` in the published `synchformer_state_dict.pth`
(../shared/reference/checkpoint_keys/synchformer_state_dict.json). Per segment of 16 frames at 224 x 224:
a Conv3d tubelet embed (2 x 16 x 16) gives t = 8 x 14 x 14 tokens after a CLS token; the spatial position
embedding is tiled over time plus a per-time embedding; each block attends over time (`timeattn`, `norm3`),
then over space (`attn`, `norm1`), then an MLP (`norm2`); the CLS token attends to every token. After the
final `norm` (CLS dropped) a TransformerEncoderLayer with its own CLS token pools the 14 x 14 tokens of each
time step (`spatial_attn_agg`), so a segment becomes `[8, D]`. `patch_embed.*` (a 2-D embed) is stored in the
published file but unused: it is kept so the file loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTSize:
    """Width and depth of one ViT trunk (the published Synchformer: 768 / 12 / 12 / 3072)."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072


class AggregationLayer(nn.TransformerEncoderLayer):
    """A pre-norm TransformerEncoderLayer with a learned CLS token; returns the CLS output.

    `[N, L, D] -> [N, D]`. GELU, eps 1e-6, batch first: Synchformer's `BaseEncoderLayer`, so the names are
    torch's (`self_attn.in_proj_weight`, `linear1`, `norm1`, ...) plus `cls_token` `[1, 1, D]`."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__(d_model=dim, nhead=heads, dim_feedforward=mlp, dropout=0.0, activation=nn.GELU(),
                         layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return super().forward(x)[:, 0]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DividedAttention(nn.Module):
    """Attention within time (`over="time"`: each spatial position across the t frames) or within space
    (`over="space"`: the n positions of each frame); the CLS token (position 0) attends to all tokens and is
    a key/value in every group. `x: [B, 1 + t*n, D] -> [B, 1 + t*n, D]`, tokens time-major (t, n)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, t: int, over: str) -> torch.Tensor:
        b, length, dim = x.shape
        h, hd = self.heads, dim // self.heads
        q, k, v = self.qkv(x).view(b, length, 3, h, hd).permute(2, 0, 3, 1, 4)  # each [B, H, L, hd]
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # [B, H, 1, hd]
        n = (length - 1) // t
        q_, k_, v_ = (z[:, :, 1:].reshape(b, h, t, n, hd) for z in (q, k, v))
        if over == "time":  # groups = spatial positions, sequences along t
            q_, k_, v_ = (z.transpose(2, 3) for z in (q_, k_, v_))  # [B, H, n, t, hd]
        groups = q_.shape[2]
        cls_k = k[:, :, :1].unsqueeze(2).expand(b, h, groups, 1, hd)
        cls_v = v[:, :, :1].unsqueeze(2).expand(b, h, groups, 1, hd)
        out = F.scaled_dot_product_attention(q_, torch.cat((cls_k, k_), dim=3), torch.cat((cls_v, v_), dim=3))
        if over == "time":
            out = out.transpose(2, 3)
        out = torch.cat((cls_out, out.reshape(b, h, t * n, hd)), dim=2)  # [B, H, L, hd]
        return self.proj(out.transpose(1, 2).reshape(b, length, dim))


class DividedBlock(nn.Module):
    """Time attention, then space attention, then the MLP, each pre-norm with a residual (MotionFormer's
    'divided' block: `norm3` before time, `norm1` before space, `norm2` before the MLP)."""

    def __init__(self, size: ViTSize) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(size.dim, eps=1e-6)
        self.attn = DividedAttention(size.dim, size.heads)
        self.timeattn = DividedAttention(size.dim, size.heads)
        self.norm2 = nn.LayerNorm(size.dim, eps=1e-6)
        self.mlp = Mlp(size.dim, size.mlp)
        self.norm3 = nn.LayerNorm(size.dim, eps=1e-6)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), t, "time")
        x = x + self.attn(self.norm1(x), t, "space")
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj


class MotionFormer(nn.Module):
    """`[B, S, C=3, T=16, 224, 224]` (frames on [-1, 1]) `-> [B, S, T/2, D]`: one vector per tubelet time step."""

    def __init__(self, size: ViTSize, img_size: int = 224, patch: int = 16, frames: int = 16, tubelet: int = 2) -> None:
        super().__init__()
        self.grid = img_size // patch
        self.t = frames // tubelet
        d = size.dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, self.t, d))
        self.patch_embed = _PatchEmbed(nn.Conv2d(3, d, patch, patch))  # stored, unused
        self.patch_embed_3d = _PatchEmbed(nn.Conv3d(3, d, (tubelet, patch, patch), (tubelet, patch, patch)))
        self.blocks = nn.ModuleList(DividedBlock(size) for _ in range(size.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.spatial_attn_agg = AggregationLayer(d, size.heads, size.mlp)
        for p in (self.cls_token, self.pos_embed, self.temp_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[:2]
        x = self.patch_embed_3d.proj(x.flatten(0, 1))  # [BS, D, t, h, w]
        bs, d, t, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # [BS, t*h*w, D], time-major
        pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temp_embed.repeat_interleave(gh * gw, dim=1)
        x = torch.cat((self.cls_token.expand(bs, -1, -1), x), dim=1)
        x = x + torch.cat((self.pos_embed[:, :1], pos), dim=1)
        for blk in self.blocks:
            x = blk(x, t)
        x = self.norm(x[:, 1:])  # the CLS token is not used by the aggregation
        x = x.reshape(bs * t, gh * gw, d)  # each time step's spatial tokens
        return self.spatial_attn_agg(x).view(b, s, t, d)
