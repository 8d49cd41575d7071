"""Vector quantisation: nearest-neighbour codebook lookup with straight-through gradients, plus codebook health.

Loss (see `VQGANConfig.beta_on`): codebook term  c = mean((zq - sg[z])^2)  moves the codes towards the encoder
outputs; commitment term  e = mean((sg[zq] - z)^2)  keeps the encoder near its codes. The reference (taming
`VectorQuantizer`) returns  e + beta * c  ("codebook"); the VQ-VAE paper writes  c + beta * e  ("commitment").
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VectorQuantizer(nn.Module):
    """`z: Tensor[B, D, H, W] -> (zq Tensor[B, D, H, W], loss_terms, indices Tensor[B, H, W])`."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, beta_on: str = "codebook") -> None:
        super().__init__()
        if beta_on not in ("codebook", "commitment"):
            raise ValueError(f"beta_on must be 'codebook' or 'commitment', not {beta_on!r}")
        self.n_embed, self.embed_dim, self.beta, self.beta_on = n_embed, embed_dim, beta, beta_on
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)  # taming's initialisation

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared L2): `Tensor[N, D] -> Tensor[N]` int64."""
        e = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)[None, :] - 2.0 * flat @ e.t()
        return d.argmin(dim=1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of an index grid: `Tensor[B, H, W]` -> `Tensor[B, D, H, W]`."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        b, d, h, w = z.shape
        # Distances in fp32: under bf16/fp16 autocast near-ties would pick different codes.
        zf = z.float()
        flat = zf.permute(0, 2, 3, 1).reshape(-1, d)
        indices = self.nearest(flat).view(b, h, w)
        zq = self.lookup(indices)
        codebook = torch.mean((zq - zf.detach()) ** 2)
        commitment = torch.mean((zq.detach() - zf) ** 2)
        if self.beta_on == "codebook":
            loss = commitment + self.beta * codebook
        else:
            loss = codebook + self.beta * commitment
        # Straight-through: forward value exactly zq (z - sg[z] is exactly 0, unlike taming's z + sg[zq - z],
        # which rounds); gradient: identity to the encoder output, none to the codes (as the reference).
        zq = zq.detach() + (zf - zf.detach())
        return zq.to(z.dtype), {"loss": loss, "codebook": codebook, "commitment": commitment}, indices

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, samples: torch.Tensor) -> int:
        """Re-seed the codes flagged in `dead` (`Tensor[n_embed]` bool) with rows of `samples` (`Tensor[N, D]`,
        e.g. random encoder outputs), cycling through them if there are fewer samples than dead codes."""
        idx = torch.nonzero(dead, as_tuple=False).flatten()
        if idx.numel() == 0 or samples.shape[0] == 0:
            return 0
        rows = torch.arange(idx.numel(), device=samples.device) % samples.shape[0]
        self.embedding.weight[idx] = samples[rows].to(self.embedding.weight)
        return int(idx.numel())


def code_counts(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """How often each code occurs in `indices` (any shape): `Tensor[n_embed]` int64."""
    return torch.bincount(indices.reshape(-1).long(), minlength=n_embed)


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of the code distribution: 1 = one code used, n_embed = all codes equally."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts.double() / total
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


def usage_stats(counts: torch.Tensor) -> dict[str, float]:
    """Perplexity, fraction of codes used, number of dead (unused) codes and bits of entropy."""
    n = counts.numel()
    used = int((counts > 0).sum())
    ppl = perplexity(counts)
    return {
        "perplexity": ppl,
        "usage": used / n,
        "dead_codes": float(n - used),
        "entropy_bits": math.log2(ppl) if ppl > 0 else 0.0,
    }
