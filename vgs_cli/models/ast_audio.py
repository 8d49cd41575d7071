"""The Audio Spectrogram Transformer as Synchformer's audio branch, in Hugging Face's `ASTModel` layout.

Names follow `afeat_extractor.*` of the published `synchformer_state_dict.pth`: `ast.embeddings.*`,
`ast.encoder.layer.<i>.{attention.attention.{query,key,value}, attention.output.dense, intermediate.dense,
output.dense, layernorm_before, layernorm_after}`, `ast.layernorm` (eps 1e-12, HF's default), then
`freq_attn_agg` (a TransformerEncoderLayer with a CLS token that pools the frequency patches of each time
step). A segment's log-mel `[T=66, F=128]` is cut into 16 x 16 patches with stride 10 in both axes:
12 frequency x 6 time patches, after a CLS and a distillation token (74 positions, as stored).
Written here rather than taken from `transformers` so the core install needs no extra package; the math is
HF's (`ASTEmbeddings`, `ASTLayer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vgs_cli.models.motionformer import AggregationLayer, ViTSize


class _Projection(nn.Module):
    def __init__(self, dim: int, patch: int, stride: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(1, dim, patch, stride)


class ASTEmbeddings(nn.Module):
    def __init__(self, dim: int, n_patches: int, patch: int, stride: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embeddings = _Projection(dim, patch, stride)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T, F] -> [N, 2 + f*t, D]` (patches frequency-major: index fi * t + ti)."""
        x = self.patch_embeddings.projection(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = torch.cat((self.cls_token.expand(n, -1, -1), self.distillation_token.expand(n, -1, -1), x), dim=1)
        return x + self.position_embeddings


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = (lin(x).view(n, length, self.heads, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, dim)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = _SelfAttention(dim, heads)
        self.output = _Dense(dim, dim)


class ASTLayer(nn.Module):
    """Pre-norm ViT layer with HF's names. `[N, L, D] -> [N, L, D]`."""

    def __init__(self, size: ViTSize) -> None:
        super().__init__()
        self.attention = _Attention(size.dim, size.heads)
        self.intermediate = _Dense(size.dim, size.mlp)
        self.output = _Dense(size.mlp, size.dim)
        self.layernorm_before = nn.LayerNorm(size.dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(size.dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention.output.dense(self.attention.attention(self.layernorm_before(x)))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class _Encoder(nn.Module):
    def __init__(self, size: ViTSize) -> None:
        super().__init__()
        self.layer = nn.ModuleList(ASTLayer(size) for _ in range(size.depth))


class ASTModel(nn.Module):
    def __init__(self, size: ViTSize, n_patches: int, patch: int, stride: int) -> None:
        super().__init__()
        self.embeddings = ASTEmbeddings(size.dim, n_patches, patch, stride)
        self.encoder = _Encoder(size)
        self.layernorm = nn.LayerNorm(size.dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T, F] -> [N, 2 + f*t, D]` (HF's `last_hidden_state`)."""
        x = self.embeddings(x)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class ASTAudio(nn.Module):
    """`[B, S, T=66, F=128]` normalised log-mels `-> [B, S, t=6, D]`: one vector per time patch."""

    def __init__(self, size: ViTSize, n_mels: int = 128, n_frames: int = 66, patch: int = 16, stride: int = 10) -> None:
        super().__init__()
        self.f = (n_mels - patch) // stride + 1
        self.t = (n_frames - patch) // stride + 1
        self.ast = ASTModel(size, self.f * self.t, patch, stride)
        self.freq_attn_agg = AggregationLayer(size.dim, size.heads, size.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[:2]
        x = self.ast(x.flatten(0, 1))[:, 2:]  # drop CLS and distillation tokens: [BS, f*t, D]
        d = x.shape[-1]
        x = x.view(b * s, self.f, self.t, d).transpose(1, 2).reshape(b * s * self.t, self.f, d)
        return self.freq_attn_agg(x).view(b, s, self.t, d)
