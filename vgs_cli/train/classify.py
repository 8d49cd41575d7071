"""Generic mel-spectrogram classification for the shared trainer (Melception and VGGish-ish both use it).

Data: shard mels `[80, 860]` on [0, 1], a random 848-frame crop for training and the centre crop for
validation, integer labels (-1 = unlabelled, ignored by the loss and the metrics). Inputs are standardised
per mel bin with statistics measured on the training shards (`mel_stats`), stored with the model so a
checkpoint is self-contained. Validation reports the loss per clip and, over the whole split, top-1,
top-5 and mAP (macro average of one-vs-rest average precision, sklearn's definition, without sklearn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vgs_cli.errors import DataError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.train.holdout import ValidSplit

IGNORE = -1  # label of an unlabelled clip


# ------------------------------------------------------------------------------------------- metrics
def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """Share of labelled rows whose class is among the k highest logits: `[N, C], [N] -> float`.
    k is capped at C (with fewer than k classes every row counts as a hit)."""
    keep = target != IGNORE
    logits, target = logits[keep], target[keep]
    if target.numel() == 0:
        return float("nan")
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == target[:, None]).any(dim=1).float().mean())


def average_precision(relevant: np.ndarray, scores: np.ndarray) -> float:
    """sklearn's `average_precision_score` for one class: sum_n (R_n - R_{n-1}) P_n over distinct thresholds
    (tied scores form one threshold). `relevant` bool[N] (at least one True), `scores` float[N]."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], relevant[order].astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Macro mAP of the softmax scores over the classes that have at least one labelled row (a class
    without positives has no defined AP; sklearn would count it as 0)."""
    keep = target != IGNORE
    probs = logits[keep].double().softmax(dim=1).numpy()
    y = target[keep].numpy()
    aps = [average_precision(y == c, probs[:, c]) for c in range(probs.shape[1]) if np.any(y == c)]
    return float(np.mean(aps)) if aps else float("nan")


# ------------------------------------------------------------------------------------------- data
def mel_stats(data_dir: Path, max_clips: int = 0, seed: int = 0, min_std: float = 0.01,
              split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and std (`float64[80]` each) of the stored [0, 1] mels of a split, over clips and
    frames (the reference's StandardNormalizeAudio). `max_clips` > 0 uses a seeded random subset; the std
    is floored at `min_std` so a constant bin cannot blow the standardised input up. Clips held out for
    validation (data without a valid split, train/holdout.py) are left out."""
    from vgs_cli.data.dataset import ShardDataset

    data = ShardDataset(data_dir, split, fields=("mel",), mel_crop=None)
    n = len(data)
    if n == 0:
        raise DataError(f"{data_dir}: no clips with audio in the {split} split")
    held = ValidSplit(data_dir, quiet=True).held_out() if split == "train" else None
    idx = np.asarray(held[0]) if held else np.arange(n)  # clips held out for validation are not looked at
    if 0 < max_clips < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_clips, replace=False))
    total = total_sq = None
    count = 0
    for i in idx:
        mel = data[int(i)]["mel"].double()  # [80, T]
        s, sq = mel.sum(dim=1), (mel * mel).sum(dim=1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += mel.shape[1]
    data.close()
    mean = (total / count).numpy()
    var = np.maximum((total_sq / count).numpy() - mean**2, 0.0)
    return mean, np.maximum(np.sqrt(var), min_std)


def data_classes(data_dir: Path) -> list[str]:
    """The class names of a shard folder; a classifier needs at least two."""
    from vgs_cli.data.shards import read_manifest

    classes = list(read_manifest(data_dir)["classes"])
    if len(classes) < 2:
        raise DataError(f"{data_dir}: a classifier needs labelled shards with at least 2 classes "
                        f"(found {len(classes)}); prepare them with labels")
    return classes


# ------------------------------------------------------------------------------------------- task
class ClassificationTask:
    """Shared part of the classifier stages. Subclasses set `stage` and implement `build_model` and
    `forward(model, mel01) -> (logits [B, C], aux_logits [B, C] | None)`."""

    stage = "classifier"
    best_metric = "loss"  # valid cross-entropy, as the reference's early stopping
    best_mode = "min"
    find_unused_parameters = False
    aux_weight = 0.0

    def __init__(self, config: Any, data_dir: Path | None, classes: list[str],
                 train_data: Dataset | None = None, valid_data: Dataset | None = None):
        """`train_data` / `valid_data` replace the shard datasets (tests): items with "mel" `Tensor[80, 848]`
        on [0, 1] and "label" (int64)."""
        self.config = config
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.classes = list(classes)
        self._train_data, self._valid_data = train_data, valid_data
        self._splits: ValidSplit | None = None

    # -- to implement
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, model: nn.Module, mel01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    # -- models and optimisers
    def build_models(self) -> dict[str, nn.Module]:
        return {"model": self.build_model()}

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        t = self.config.train
        return {"model": torch.optim.Adam(models["model"].parameters(), lr=t.lr, betas=tuple(t.betas),
                                          weight_decay=t.weight_decay)}

    # -- data
    def train_dataset(self) -> Dataset:
        if self._train_data is None:
            self._train_data = self._shards("train", "random")
            if self._train_data is None:
                raise VgsError(f"{self.data_dir}: no clips with audio in the train split")
        return self._train_data

    def valid_dataset(self) -> Dataset | None:
        if self._valid_data is None:
            self._valid_data = self._shards("valid", "center")
        return self._valid_data

    def _shards(self, split: str, crop: str) -> Dataset | None:
        from vgs_cli.data.dataset import ShardDataset

        if self.data_dir is None:
            raise VgsError(f"the {self.stage} task needs a data folder (--data)")
        data_dir = self.data_dir
        self._splits = self._splits or ValidSplit(data_dir)  # no valid split in the data: train/holdout.py
        data = self._splits.dataset(split, lambda s: ShardDataset(data_dir, s, fields=("mel", "label", "id"),
                                                                  mel_crop=crop))
        return data if data is not None and len(data) > 0 else None

    # -- steps
    def loss(self, logits: torch.Tensor, aux: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE)
        if aux is not None:
            # weight 0 still touches the aux head so DDP sees every parameter used
            loss = loss + self.aux_weight * F.cross_entropy(aux.float(), target, ignore_index=IGNORE)
        return loss

    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        """`batch`: "mel" `Tensor[B, 80, 848]` on [0, 1], "label" `Tensor[B]`."""
        mel = batch["mel"].to(ctx.device).float()
        target = batch["label"].to(ctx.device).long()
        with ctx.autocast():
            logits, aux = self.forward(models["model"], mel)
        loss = self.loss(logits, aux, target)
        ctx.backward("model", loss)
        return {"loss": float(loss.detach()), "acc": topk_accuracy(logits.detach().float().cpu(), target.cpu(), 1)}

    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        model = models["model"]
        device = next(model.parameters()).device
        mel = batch["mel"].to(device).float()
        target = batch["label"].to(device).long()
        logits, _ = self.forward(model, mel)
        logits = logits.float()
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
        return {"loss": loss, "_logits": logits, "_target": target}

    def summarize_eval(self, collected: dict[str, torch.Tensor]) -> dict[str, float]:
        if "_logits" not in collected:
            return {}
        logits, target = collected["_logits"].float().cpu(), collected["_target"].long().cpu()
        return {"top1": topk_accuracy(logits, target, 1), "top5": topk_accuracy(logits, target, 5),
                "mAP": mean_average_precision(logits, target)}

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"classes": list(self.classes)}
        manifest = self.data_dir / "manifest.json" if self.data_dir is not None else None
        if manifest is not None and manifest.is_file():
            extra["data_manifest_sha256"] = file_sha256(manifest)
        return extra


def reject_cli_opts(stage: str, cli_opts: dict[str, Any]) -> None:
    unexpected = sorted(k for k, v in cli_opts.items() if v is not None)
    if unexpected:
        raise VgsError(f"`vgs train {stage}` has no option(s) {', '.join(unexpected)}")
