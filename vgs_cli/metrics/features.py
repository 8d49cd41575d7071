"""Classifier outputs the metrics use: pooled features (FID, KID), unbiased logits (ISc), logits (MKL).

Works with both classifier stages:
- Melception: 2048-d pooled Mixed_7c features; `logits_unbiased` = features @ fc.weight^T (the reference's
  "logits_unbiased"), `logits` adds fc.bias.
- VGGish-ish: the 4096-d output of the second fully connected layer (after its ReLU), and the last linear
  layer split the same way.
Models run in eval mode (BatchNorm statistics, no dropout), so every output row depends on its own input
only and the numbers do not depend on the batch size used to extract them.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from vgs_cli.audio.spec import to_model_range
from vgs_cli.errors import VgsError

OUTPUTS = ("features", "logits_unbiased", "logits")


def _split_linear(hidden: torch.Tensor, fc: nn.Linear) -> dict[str, torch.Tensor]:
    unbiased = hidden @ fc.weight.T
    return {"features": hidden, "logits_unbiased": unbiased, "logits": unbiased + fc.bias}


def classifier_outputs(model: nn.Module, mel01: torch.Tensor) -> dict[str, torch.Tensor]:
    """`Tensor[B, 80, T]` mels on [0, 1] -> {"features" [B, D], "logits_unbiased" [B, C], "logits" [B, C]}."""
    # imported here so the metric functions do not pull in every model
    from vgs_cli.models.melception import Melception
    from vgs_cli.models.vggishish import VGGishish

    if isinstance(model, Melception):
        out = model(mel01)
        return {k: out[k] for k in OUTPUTS}
    if isinstance(model, VGGishish):
        emb = model.embed(to_model_range(mel01))
        hidden = model.classifier[:-1](emb)
        return _split_linear(hidden, model.classifier[-1])
    raise VgsError(f"cannot score with a {type(model).__name__}: use a melception or vggishish checkpoint")


def batched(items: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Stack single mels `Tensor[80, T]` into batches `Tensor[b, 80, T]` of at most `batch_size`."""
    if batch_size < 1:
        raise VgsError(f"batch size must be >= 1, got {batch_size}")
    buf: list[torch.Tensor] = []
    for mel in items:
        buf.append(mel)
        if len(buf) == batch_size:
            yield torch.stack(buf)
            buf = []
    if buf:
        yield torch.stack(buf)


@torch.no_grad()
def extract(model: nn.Module, batches: Iterable[torch.Tensor], device: str | torch.device = "cpu",
            progress=None) -> dict[str, np.ndarray]:
    """Run the classifier over batches of [0, 1] mels `Tensor[b, 80, T]` and concatenate the outputs:
    {"features": float64[N, D], "logits_unbiased": float64[N, C], "logits": float64[N, C]}."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in OUTPUTS}
    try:
        for mel in batches:
            out = classifier_outputs(model, mel.to(device=device, dtype=torch.float32))
            for key in OUTPUTS:
                parts[key].append(out[key].double().cpu().numpy())
            if progress is not None:
                progress(mel.shape[0])
    finally:
        model.train(was_training)
    if not parts["features"]:
        raise VgsError("no spectrograms to score")
    return {k: np.concatenate(v) for k, v in parts.items()}
