"""`vgs train codebook`: the VQGAN spectrogram codebook with L1 + LPAPS + PatchGAN (SpecVQGAN stage 1).

One step = discriminator update (hinge, real vs detached reconstruction; only from `loss.disc_start`) THEN
autoencoder update:  l1_weight * L1 + perceptual_weight * LPAPS + codebook_weight * VQ loss
+ d_weight * (-mean D(xrec)). Inputs are shard mels (random or centre crop of `train_frames`) on [-1, 1].
Validation: per-clip L1 and LPAPS on the centre 848 frames, codebook perplexity / usage / dead codes over
the split, and a PNG of a few input/reconstruction pairs in run_dir/samples.

Deliberate difference: `--lpaps PATH` that does not load is an error. The reference's LPAPS never found its
weights and silently trained against a randomly initialised VGGish-ish (issue #13).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from vgs_cli.audio.plot import save_mel_png
from vgs_cli.audio.spec import crop_frames, from_model_range, to_model_range
from vgs_cli.config.codebook import PRESETS, CodebookConfig
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import CheckpointError, DataError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import load_model
from vgs_cli.models.lpaps import LPAPS
from vgs_cli.models.patchgan import PatchDiscriminator
from vgs_cli.models.quantize import code_counts, usage_stats
from vgs_cli.models.vqgan import VQGAN
from vgs_cli.train.holdout import ValidSplit
from vgs_cli.train.losses import D_LOSSES, adaptive_weight, gan_active, gan_optimizers, generator_adv_loss

__all__ = ["PRESETS", "CONFIG_CLASS", "make_task", "CodebookTask", "MelCrops", "load_lpaps"]

CONFIG_CLASS = CodebookConfig


# ----------------------------------------------------------------------------------------------- LPAPS
def load_lpaps(path: str | Path) -> LPAPS:
    """The perceptual metric from a vgs `vggishish` checkpoint (conv weights + per-bin scaling; uniform lin).

    Anything that does not load exactly (missing file, another stage, other shapes) raises a VgsError: a
    silently random perceptual network is what the reference trained with (issue #13)."""
    try:
        model, _, _ = load_model(path, stage="vggishish")
    except CheckpointError as exc:
        raise CheckpointError(f"--lpaps: {exc}") from None
    return LPAPS.from_vggishish(model)


# ----------------------------------------------------------------------------------------------- data
class MelCrops(Dataset):
    """Shard mels as codebook inputs: item -> {"mel": Tensor[1, 80, frames] on [-1, 1], "id": str}.

    `base[i]["mel"]` is a stored `Tensor[80, >= frames]` on [0, 1]; `random` draws the crop start from torch's
    global RNG (seeded per rank / DataLoader worker by the trainer), else the centre is taken."""

    def __init__(self, base: Dataset, frames: int, random: bool) -> None:
        self.base, self.frames, self.random = base, frames, random

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        mel = torch.as_tensor(item["mel"]).float()
        mel = crop_frames(mel, self.frames, "random" if self.random else "center")
        return {"mel": to_model_range(mel).unsqueeze(0), "id": str(item.get("id", index))}


# ----------------------------------------------------------------------------------------------- task
class CodebookTask:
    """Models: "model" (VQGAN), "disc" (PatchGAN), "lpaps" (frozen, only when enabled)."""

    stage = "codebook"
    best_metric = "rec_loss"
    best_mode = "min"
    find_unused_parameters = False

    def __init__(self, config: CodebookConfig, data_dir: Path | None, lpaps: LPAPS | None = None,
                 lpaps_source: str = "none", train_data: Dataset | None = None,
                 valid_data: Dataset | None = None, manifest: dict[str, Any] | None = None) -> None:
        """`train_data` / `valid_data` replace the shard splits (tests): items with "mel" `Tensor[80, T]`."""
        self.config = config
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.lpaps, self.lpaps_source = lpaps, lpaps_source
        self.manifest = manifest or {}
        self._train_base, self._valid_base = train_data, valid_data
        self._counts: torch.Tensor | None = None  # code usage over the current dead-code window
        self._splits: ValidSplit | None = None

    @property
    def perceptual_weight(self) -> float:
        return self.config.loss.perceptual_weight if self.lpaps is not None else 0.0

    # -- models and optimisers
    def build_models(self) -> dict[str, nn.Module]:
        loss = self.config.loss
        disc: nn.Module = PatchDiscriminator(self.config.model.in_channels, loss.disc_ndf, loss.disc_layers)
        if self._sync_bn():
            disc = nn.SyncBatchNorm.convert_sync_batchnorm(disc)  # same names and buffers as BatchNorm2d
        models = {"model": VQGAN(self.config.model), "disc": disc}
        if self.lpaps is not None:
            models["lpaps"] = self.lpaps
        return models

    def _sync_bn(self) -> bool:
        # SyncBatchNorm needs CUDA; with gloo on CPU each rank normalises its own micro-batch (documented).
        return (self.config.sync_batchnorm and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1 and torch.cuda.is_available()
                and dist.get_backend() == "nccl")

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return gan_optimizers(models, self.config.train)

    # -- data
    def train_dataset(self) -> Dataset:
        base = self._train_base if self._train_base is not None else self._shards("train")
        if base is None or len(base) == 0:  # type: ignore[arg-type]
            raise DataError(f"{self.data_dir}: no clips with audio in the train split")
        return MelCrops(base, self.config.train_frames, self.config.random_crop)

    def valid_dataset(self) -> Dataset | None:
        if self._valid_base is None and self.data_dir is not None:
            self._valid_base = self._shards("valid")
        if self._valid_base is None or len(self._valid_base) == 0:  # type: ignore[arg-type]
            return None
        return MelCrops(self._valid_base, SPEC.model_frames, random=False)

    def _shards(self, split: str) -> Dataset | None:
        """A shard split, or with no valid split in the data the automatic hold-out (train/holdout.py)."""
        from vgs_cli.data.dataset import ShardDataset

        if self.data_dir is None:
            raise VgsError("the codebook task needs a data folder (--data)")
        data_dir = self.data_dir
        self._splits = self._splits or ValidSplit(data_dir)
        return self._splits.dataset(split, lambda s: ShardDataset(data_dir, s, fields=("mel", "id"), mel_crop=None))

    # -- training
    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        """`batch["mel"]`: `Tensor[B, 1, 80, W]` on [-1, 1]. Discriminator step (once active), then autoencoder."""
        vq, disc = models["model"], models["disc"]
        x = batch["mel"].to(ctx.device)
        loss_cfg = self.config.loss
        gan_on = gan_active(ctx.step, loss_cfg.disc_start)
        with ctx.autocast():
            xrec, qloss, info = vq(x)
        logs: dict[str, float] = {}
        if gan_on:
            with ctx.autocast():
                # Two calls, as the reference: BatchNorm sees real and fake batches separately.
                logits_real = disc(x.detach())
                logits_fake = disc(xrec.detach())
                loss_d = D_LOSSES[loss_cfg.disc_loss](logits_real.float(), logits_fake.float())
            ctx.backward("disc", loss_d)
            logs.update(loss_d=loss_d.item(), logits_real=logits_real.float().mean().item(),
                        logits_fake=logits_fake.float().mean().item())

        xrec32 = xrec.float()
        l1 = (x - xrec32).abs().mean()
        nll = loss_cfg.l1_weight * l1
        if self.perceptual_weight > 0:
            p_loss = models["lpaps"](x, xrec32).mean()
            nll = nll + self.perceptual_weight * p_loss
            logs["lpaps"] = p_loss.item()
        loss = nll + loss_cfg.codebook_weight * qloss.float()
        if gan_on:
            bare_disc = ctx.unwrap(disc)  # the generator step must not drive D's DDP reducer
            with ctx.autocast():
                g_loss = generator_adv_loss(bare_disc(xrec).float())
            d_weight = self._disc_weight(nll, g_loss, ctx.unwrap(vq).last_layer)
            loss = loss + d_weight * g_loss
            logs.update(g_loss=g_loss.item(), d_weight=float(d_weight))
        ctx.backward("gen", loss)
        logs.update(loss=loss.item(), l1=l1.item(), qloss=qloss.item(), nll=nll.item(),
                    **self._track_codes(ctx, ctx.unwrap(vq), info))
        return logs

    def _disc_weight(self, nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor | float:
        cfg = self.config.loss
        if cfg.disc_weight_mode == "constant":
            return cfg.disc_weight
        # Under DDP each rank balances with its own local gradients (as the reference under Lightning did);
        # the gradients themselves are still averaged, so the ranks stay identical.
        return adaptive_weight(nll, g_loss, last_layer) * cfg.disc_weight

    def _track_codes(self, ctx: Any, vq: VQGAN, info: dict[str, torch.Tensor]) -> dict[str, float]:
        """Batch perplexity every step; usage over the window (summed over ranks) and optional dead-code
        restarts at its end. Restarts run on rank 0's samples and are broadcast so the ranks stay identical."""
        n = self.config.model.n_embed
        counts = code_counts(info["indices"].detach(), n)
        self._counts = counts if self._counts is None else self._counts + counts
        out = {"perplexity": usage_stats(counts)["perplexity"]}
        window = self.config.dead_code_window
        if not ctx.boundary or window <= 0 or (ctx.step + 1) % window:
            return out
        total = self._counts.clone()
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed:
            dist.all_reduce(total)
        self._counts = None
        dead = total == 0
        out["dead_codes"] = float(dead.sum())
        if self.config.restart_dead_codes and bool(dead.any()):
            quantizer = vq.quantize
            z = info["z"].float().permute(0, 2, 3, 1).reshape(-1, info["z"].shape[1])
            picks = z[torch.randperm(z.shape[0], device=z.device)[: int(dead.sum())]]
            out["restarted"] = float(quantizer.restart(dead, picks))
            if distributed:
                dist.broadcast(quantizer.embedding.weight.data, src=0)
        return out

    # -- validation
    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """`batch["mel"]` `Tensor[B, 1, 80, 848]` -> per-clip "l1", "lpaps" (if enabled), "rec_loss"
        (= l1_weight * l1 + perceptual_weight * lpaps, the reference's val/rec_loss) and "_indices"."""
        vq = models["model"]
        x = batch["mel"].to(next(vq.parameters()).device)
        xrec, _, info = vq(x)
        xrec = xrec.float()
        l1 = (x - xrec).abs().mean(dim=(1, 2, 3))
        out = {"l1": l1, "_indices": info["indices"].cpu()}
        rec = self.config.loss.l1_weight * l1
        if self.perceptual_weight > 0:
            p = models["lpaps"](x, xrec)
            out["lpaps"] = p
            rec = rec + self.perceptual_weight * p
        out["rec_loss"] = rec
        return out

    def summarize_eval(self, collected: dict[str, torch.Tensor]) -> dict[str, float]:
        if "_indices" not in collected:
            return {}
        return usage_stats(code_counts(collected["_indices"], self.config.model.n_embed))

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        data = self.valid_dataset()
        n = min(self.config.num_plots, len(data)) if data is not None else 0  # type: ignore[arg-type]
        if n == 0:
            return {}
        vq = models["model"]
        device = next(vq.parameters()).device
        items = [data[i] for i in range(n)]  # type: ignore[index]
        x = torch.stack([it["mel"] for it in items]).to(device)
        with torch.no_grad():
            xrec = vq(x)[0].float()
        panels = []
        for it, a, b in zip(items, x, xrec, strict=True):
            panels += [(f"{it['id']}: input", from_model_range(a[0]).cpu().numpy()),
                       (f"{it['id']}: reconstruction", from_model_range(b[0]).cpu().numpy())]
        save_mel_png(Path(run_dir) / "samples" / f"reconstructions_step{step:07d}.png", panels, dpi=60)
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "spec": self.manifest.get("spec", SPEC.to_dict()),
            "classes": list(self.manifest.get("classes", [])),
            "lpaps": self.lpaps_source,
            "input": "mel [80, T] on [-1, 1], T a multiple of 16",
        }
        manifest = self.data_dir / "manifest.json" if self.data_dir is not None else None
        if manifest is not None and manifest.is_file():
            extra["data_manifest_sha256"] = file_sha256(manifest)
        return extra


def make_task(cfg: CodebookConfig, data_dir: Path, lpaps: str | Path | None = None, **cli_opts: Any) -> CodebookTask:
    """The task for `vgs train codebook --data DIR [--lpaps none|VGGISHISH_CKPT]`.

    An explicit `--lpaps PATH` wins and is recorded (absolute) in the config; without it (or with "none")
    the config's `lpaps` is used, which is "none" for a new run and the recorded network when resuming."""
    unexpected = sorted(k for k, v in cli_opts.items() if v is not None)
    if unexpected:
        raise VgsError(f"`vgs train codebook` has no option(s) {', '.join(unexpected)}")
    from vgs_cli.data.shards import read_manifest

    manifest = read_manifest(data_dir)
    if lpaps is not None and str(lpaps).lower() != "none":
        cfg = cfg.replace(lpaps=str(Path(lpaps).resolve()))
    net, source = None, "none"
    if cfg.lpaps.lower() != "none":
        net = load_lpaps(cfg.lpaps)
        source = f"{Path(cfg.lpaps).name} sha256:{file_sha256(cfg.lpaps)[:16]}"
    return CodebookTask(cfg, data_dir, lpaps=net, lpaps_source=source, manifest=manifest)
