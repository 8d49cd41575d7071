"""`vgs train transformer`: the GPT over frozen-codebook indices, primed by visual features and/or the class.

The codebook is frozen, so every clip is encoded once (centre crop, as the reference's `random_crop: False`)
and the codes are cached on disk (`train/codes_cache.py`); training then reads codes + conditions only.
Loss: cross-entropy of every code given the condition and the previous codes. Optimiser: AdamW (0.9, 0.95)
with weight decay on Linear weights only (not biases, LayerNorm, embeddings, the Conv1d feature embedder or
`pos_emb`), as the reference's `configure_optimizers`. Validation: token cross-entropy (best.ckpt by it),
token accuracy and perplexity on the valid split.

The resolved config records what the data and codebook imply: `vocab_size` and `grid` (codebook),
`feat_dim` (the shard manifest's extractor), `num_classes` (the manifest's classes). Checkpoints' `extra`
records the condition, feature extractor and its settings (so `generate` extracts identically), and the
codebook's path, sha256 and config (`check_codebook_match`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from vgs_cli.config.codebook import CodebookConfig
from vgs_cli.config.transformer import CONDITIONS, PRESETS, TransformerConfig
from vgs_cli.data import shards
from vgs_cli.data.dataset import ShardDataset
from vgs_cli.errors import ConfigError, DataError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.models.gpt import GPT, to_sequence
from vgs_cli.models.vqgan import VQGAN
from vgs_cli.train import finetune
from vgs_cli.train.codes_cache import CodeSet, load_or_build_codes
from vgs_cli.train.holdout import say_held_out

__all__ = ["PRESETS", "CONFIG_CLASS", "make_task", "TransformerTask", "CodesDataset",
           "load_codebook", "resolve_config", "param_groups"]

CONFIG_CLASS = TransformerConfig


# ----------------------------------------------------------------------------------------------- set-up
def load_codebook(path: str | Path) -> tuple[VQGAN, dict[str, Any]]:
    """The frozen codebook (eval mode, no gradients) and its checkpoint dict (state_dict dropped)."""
    from vgs_cli.loading.models import load_model

    model, _, ckpt = load_model(path, "codebook")
    ckpt.pop("state_dict", None)
    model.requires_grad_(False)
    return model, ckpt


def resolve_config(cfg: TransformerConfig, manifest: dict[str, Any], codebook_cfg: CodebookConfig,
                   condition: str | None, feat_frames: int | None, extractor: str | None,
                   codebook_sha256: str = "") -> TransformerConfig:
    """`cfg` with the condition options (None = keep the config's) and the sizes the data and codebook imply.

    A config that already records a codebook (a resumed run) keeps its condition, frames and extractor:
    asking for others, or passing another codebook file, is an error instead of a silently different model."""
    if cfg.codebook_sha256:
        _check_same_run(cfg, condition, feat_frames, extractor, codebook_sha256)
    condition = condition or cfg.model.condition
    if condition not in CONDITIONS:
        raise ConfigError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    m = cfg.model.replace(condition=condition, vocab_size=codebook_cfg.model.n_embed, grid=codebook_cfg.model.grid)
    name = ""
    if m.uses_feats:
        frames = cfg.model.feat_frames if feat_frames is None else feat_frames
        if not 1 <= frames <= m.feat_window:
            raise ConfigError(f"--feat-frames must be between 1 and {m.feat_window} (the paper used 1, 5 or 212), "
                              f"got {frames}")
        available = list(manifest.get("extractors", {}))
        name = extractor or cfg.extractor or (available[0] if available else "")
        if name not in available:
            raise DataError(f"the shards hold no {name!r} features (available: {', '.join(available) or 'none'})"
                            if name else "the shards hold no visual features; use --condition class or none")
        m = m.replace(feat_frames=frames, feat_dim=int(manifest["extractors"][name]["dim"]))
    else:
        m = m.replace(feat_frames=1)  # unused by "class" and "none"; 1 keeps the config honest
    classes = manifest.get("classes", [])
    if m.uses_class and not classes:
        raise DataError("--condition class needs class labels, and these shards have none")
    if classes:
        m = m.replace(num_classes=len(classes))
    return cfg.replace(model=m, extractor=name, codebook_sha256=codebook_sha256 or cfg.codebook_sha256)


def _check_same_run(cfg: TransformerConfig, condition: str | None, feat_frames: int | None,
                    extractor: str | None, codebook_sha256: str) -> None:
    m = cfg.model
    asked = {"--condition": (condition, m.condition), "--extractor": (extractor, cfg.extractor or None)}
    if m.uses_feats:
        asked["--feat-frames"] = (feat_frames, m.feat_frames)
    for flag, (want, have) in asked.items():
        if want is not None and have is not None and want != have:
            raise VgsError(f"this run was trained with {flag} {have}; resume it with the same setting or use "
                           f"a new --run folder")
    if codebook_sha256 and codebook_sha256 != cfg.codebook_sha256:
        raise VgsError(f"this run's codes come from another codebook (sha256 {cfg.codebook_sha256[:12]}..., "
                       f"given {codebook_sha256[:12]}...); pass that file or use a new --run folder "
                       "(or clear codebook_sha256 in a copied config)")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay the weights of Linear layers only (the reference's minGPT rule)."""
    decay, no_decay = [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:  # frozen (LoRA base, --freeze)
                continue
            (decay if isinstance(module, nn.Linear) and pname == "weight" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------- data
class CodesDataset(Dataset):
    """Cached codes joined with their conditions: item -> {"codes": int64 Tensor[265] (GPT order),
    "feats": Tensor[F, D] (feature conditions), "label": int64 scalar}."""

    def __init__(self, codeset: CodeSet, data_dir: Path, split: str, cfg: TransformerConfig):
        self.seq = to_sequence(torch.from_numpy(codeset.codes))
        self.ids, self.labels = codeset.ids, torch.from_numpy(codeset.labels)
        self.base = None
        if cfg.model.uses_feats:
            self.base = ShardDataset(data_dir, split, fields=("feats", "id"), feat_frames=cfg.model.feat_frames,
                                     feat_window=cfg.model.feat_window, extractor=cfg.extractor, require_audio=True)
            if len(self.base) != len(self.ids):
                raise DataError(f"codes cache {codeset.path} holds {len(self.ids)} clips but the {split!r} split "
                                f"has {len(self.base)}; delete the cache file to rebuild it")
        if cfg.model.uses_class and bool((self.labels < 0).any()):
            n = int((self.labels < 0).sum())
            raise DataError(f"class conditioning: {n} clip(s) of the {split!r} split have no class label")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"codes": self.seq[index], "label": self.labels[index]}
        if self.base is not None:
            row = self.base[index]
            if row["id"] != self.ids[index]:
                raise DataError(f"codes cache out of step with the shards at clip {row['id']!r}; delete the cache")
            item["feats"] = row["feats"].float()
        return item


# ----------------------------------------------------------------------------------------------- task
class TransformerTask:
    stage = "transformer"
    best_metric = "loss"
    best_mode = "min"
    find_unused_parameters = False

    def __init__(self, cfg: TransformerConfig, data_dir: Path, codebook_path: Path, manifest: dict[str, Any],
                 codebook: VQGAN, codebook_ckpt: dict[str, Any], new_classes: bool = False):
        self.config, self.data_dir, self.codebook_path = cfg, data_dir, codebook_path
        self.manifest, self.codebook, self.codebook_ckpt = manifest, codebook, codebook_ckpt
        self.codebook_sha256 = cfg.codebook_sha256 or file_sha256(codebook_path)
        self._datasets: dict[str, Dataset | None] = {}
        self.new_classes = new_classes
        self.init_record: dict[str, str] | None = None  # set by the runner: the --init file (a LoRA base)
        self.param_counts: tuple[int, int] | None = None  # (trainable, total) once prepared
        self._adapter_best: float | None = None

    def check_weights_source(self, path: Path) -> None:
        """The checkpoint the weights come from (--init, or the run's own last.ckpt on resume) was trained on
        features made another way than these shards' (precision, input size, weights, frame path): a DataError
        (loading/extractors.check_same_features, the check generation from shards makes too)."""
        from vgs_cli.loading.extractors import check_same_features
        from vgs_cli.loading.models import peek_checkpoint

        extra = ((peek_checkpoint(path) if Path(path).is_file() else None) or {}).get("extra") or {}
        name, want = extra.get("extractor"), extra.get("extractor_settings")
        if not (self.config.model.uses_feats and name == self.config.extractor and want):
            return
        have = self.manifest.get("extractors", {}).get(name) or {}
        check_same_features(name, have, want, f"{self.data_dir}: the shards'")

    def build_models(self) -> dict[str, nn.Module]:
        # the frozen codebook rides along so the trainer puts it on the training device for the encoding
        return {"model": GPT(self.config.model), "codebook": self.codebook}

    def adapt_init_state(self, name: str, state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        """--init hook: --new-classes gives the GPT a new class table (train/finetune.py)."""
        return finetune.new_class_state(self.config, state, model) if name == "model" and self.new_classes else state

    def prepare_models(self, models: dict[str, nn.Module]) -> None:
        """After the (--init) weights, before the optimiser: LoRA adapters / frozen parameters."""
        self.param_counts = finetune.prepare_gpt(models["model"], self.config, self.init_record is not None)

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        t = self.config.train
        return {"gpt": torch.optim.AdamW(param_groups(models["model"], t.weight_decay), lr=t.lr, betas=t.betas)}

    def _dataset(self, split: str) -> Dataset | None:
        if split not in self._datasets:
            splits = self.manifest.get("splits", {})
            if not splits.get("valid") and splits.get("train"):
                self._auto_split()
            elif not splits.get(split):
                self._datasets[split] = None
            else:
                self._datasets[split] = CodesDataset(self._codes(split), self.data_dir, split, self.config)
        return self._datasets.get(split)

    def _auto_split(self) -> None:
        """No valid split in the data: hold out a stable ~15% of the training clips (train/holdout.py)."""
        full = CodesDataset(self._codes("train"), self.data_dir, "train", self.config)
        train, valid = say_held_out(self.data_dir, list(full.ids))
        self._datasets["train"] = Subset(full, train) if valid else full
        self._datasets["valid"] = Subset(full, valid) if valid else None

    def _codes(self, split: str) -> CodeSet:
        from vgs_cli.train.trainer_utils import note

        device = next(self.codebook.parameters()).device

        def encode(mel: torch.Tensor) -> torch.Tensor:
            return self.codebook.encode(mel)[1]

        def progress(done: int, total: int) -> None:
            if done == total:
                note(f"encoded the {total} {split} clips with the frozen codebook")

        return load_or_build_codes(encode, self.codebook_sha256, self.data_dir, split, device, progress=progress)

    def train_dataset(self) -> Dataset:
        ds = self._dataset("train")
        if ds is None:
            raise DataError(f"{self.data_dir} has no training clips")
        return ds

    def valid_dataset(self) -> Dataset | None:
        return self._dataset("valid")

    @staticmethod
    def _logits(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        codes = batch["codes"]
        logits = model(codes[:, :-1], batch.get("feats"), batch.get("label"))
        return logits.float(), codes

    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            logits, codes = self._logits(models["model"], batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        ctx.backward("gpt", loss)
        return {"loss": loss.detach()}

    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits, codes = self._logits(models["model"], batch)
        nll = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")  # [B, 265]
        rows = self.config.model.grid[0]
        # the first time column has no previous codes to lean on: only the condition can inform it
        return {"loss": nll.mean(dim=1), "loss_first_step": nll[:, :rows].mean(dim=1),
                "accuracy": (logits.argmax(-1) == codes).float().mean(dim=1)}

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        loss = metrics.get("loss")
        if loss is None:
            return {}
        path = Path(run_dir) / "checkpoints" / finetune.ADAPTER_FILE
        if self.config.finetune.lora_rank:
            if self._adapter_best is None:  # a resumed run: the adapter file so far holds the best
                self._adapter_best = finetune.adapter_loss(path)
            if self._adapter_best is None or loss < self._adapter_best:
                self._adapter_best = loss
                extra = {**self.checkpoint_extra(), "step": step, "metrics": dict(metrics)}
                finetune.write_adapter(path, models["model"], self.config, extra, self.init_record)
        return {"perplexity": math.exp(min(loss, 50.0))}

    def checkpoint_extra(self) -> dict[str, Any]:
        m = self.config.model
        extractor = self.config.extractor
        return {
            "condition": m.condition,
            "feat_frames": m.feat_frames if m.uses_feats else 0,
            "extractor": extractor,
            "extractor_settings": dict(self.manifest.get("extractors", {}).get(extractor, {})) if extractor else {},
            "classes": list(self.manifest.get("classes", [])),
            "codebook_path": str(Path(self.codebook_path).resolve()),
            "codebook_sha256": self.codebook_sha256,
            "codebook_config": self.codebook_ckpt.get("config", {}),
            "data": str(Path(self.data_dir).resolve()),
            **({"trainable_params": self.param_counts[0], "total_params": self.param_counts[1]}
               if self.param_counts else {}),
        }


def make_task(cfg: TransformerConfig, data_dir: Path, codebook: Path | str | None = None,
              condition: str | None = None, feat_frames: int | None = None, extractor: str | None = None,
              new_classes: bool = False, **cli_opts: Any) -> TransformerTask:
    """The task for `vgs train transformer --codebook CKPT [--condition C] [--feat-frames F] [--extractor E]`
    (unset options come from the config: the preset's for a new run, the run's own when resuming)."""
    unexpected = sorted(k for k, v in cli_opts.items() if v is not None)
    if unexpected:
        raise VgsError(f"`vgs train transformer` has no option(s) {', '.join(unexpected)}")
    if codebook is None:
        raise VgsError("`vgs train transformer` needs --codebook (a trained codebook checkpoint)")
    codebook_path = Path(codebook)
    model, ckpt = load_codebook(codebook_path)
    manifest = shards.read_manifest(data_dir)
    codebook_cfg = CodebookConfig.from_dict(ckpt["config"])
    sha = file_sha256(codebook_path)
    resolved = resolve_config(cfg, manifest, codebook_cfg, condition, feat_frames, extractor, sha)
    return TransformerTask(resolved, Path(data_dir), codebook_path, manifest, model, ckpt, new_classes=new_classes)
