"""Codebooks built in a second instead of trained for minutes: VQGAN checkpoints whose codes are fixed,
deterministic functions of the mel, which is all a transformer test needs from its codebook."""

from __future__ import annotations

from pathlib import Path

import torch

from vgs_cli.audio.spec import to_model_range
from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.codebook import CodebookConfig, VQGANConfig
from vgs_cli.data.dataset import ShardDataset
from vgs_cli.models.vqgan import VQGAN

CONFIG = dict(ch=4, num_res_blocks=1, attn_resolutions=(), z_channels=8, embed_dim=8, norm_groups=4)


def _kmeans(v: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding, then 10 Lloyd steps: `v` `Tensor[N, D]` -> centres `Tensor[n, D]`."""
    centres = [v[torch.randint(len(v), (1,), generator=g)][0]]
    for _ in range(n - 1):
        d = torch.cdist(v, torch.stack(centres)).min(1).values ** 2 + 1e-12
        centres.append(v[torch.multinomial(d / d.sum(), 1, generator=g)][0])
    c = torch.stack(centres)
    for _ in range(10):
        assign = torch.cdist(v, c).argmin(1)
        for k in range(n):
            if (assign == k).any():
                c[k] = v[assign == k].mean(0)
    return c


def _pooling_encoder(model: VQGAN) -> None:
    """Turn the encoder into exact 16x16 mean pooling of the mel: identity `conv_in`, 2x2 box downsampling (the
    3x3 stride-2 kernels' top-left taps; the padding is right/bottom), residual branches and the middle
    attention off, and only the centre taps of the random `conv_out`. So a grid cell sees its own 16 frames
    and nothing later: codes follow the loudness of their patch, and the column before an event does not
    announce it (a 3x3 smoothing did, which let the unconditioned model predict onsets)."""
    enc = model.encoder
    with torch.no_grad():
        for name, module in enc.named_modules():
            if not isinstance(module, torch.nn.Conv2d):
                continue
            w = module.weight
            if name == "conv_out":
                centre = w[:, :, 1, 1].clone()
                w.zero_()
                w[:, :, 1, 1] = centre
                continue
            w.zero_()
            module.bias.zero_()
            if name == "conv_in":
                w[:, :, 1, 1] = 1.0
            elif name.endswith("downsample.conv"):
                for c in range(w.shape[0]):
                    w[c, c, :2, :2] = 0.25
            elif name.endswith("nin_shortcut"):
                w.fill_(1.0 / w.shape[1])
            # residual branches (conv1/conv2) and attention projections stay 0: those blocks are identities


def build_codebook(data_dir: Path, path: Path, n_embed: int = 16, seed: int = 0, pooling: bool = False,
                   n_mels: int = 16) -> Path:
    """A tiny VQGAN with k-means++ code vectors fitted to its encoder outputs on `data_dir`'s first `n_mels`
    train mels. Random encoder by default; `pooling=True` makes it a local mel average first
    (`_pooling_encoder`), so that the codes follow loudness events instead of noise (see
    tests/test_transformer_synthetic.py)."""
    torch.manual_seed(seed)
    cfg = VQGANConfig(**CONFIG, n_embed=n_embed)
    model = VQGAN(cfg).eval()
    if pooling:
        _pooling_encoder(model)
    ds = ShardDataset(data_dir, "train", fields=("mel",), mel_crop="center")
    picks = torch.linspace(0, len(ds) - 1, min(len(ds), n_mels)).round().long().unique() if pooling else \
        range(min(len(ds), n_mels))
    mels = torch.stack([ds[int(i)]["mel"] for i in picks])
    with torch.no_grad():
        z = model.encode_pre_quant(to_model_range(mels).unsqueeze(1))
    v = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    model.quantize.embedding.weight.data.copy_(_kmeans(v, n_embed, torch.Generator().manual_seed(seed)))
    return save_checkpoint(path, stage="codebook", config=CodebookConfig(model=cfg).to_dict(),
                           state_dict=model.state_dict())
