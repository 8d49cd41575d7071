"""Transformer fine-tuning helpers (the `TransformerTask` hooks): new class tables, LoRA / frozen parameters,
the adapter file (the validation split for data that has none is every stage's: train/holdout.py).

- `--new-classes`: the base's class table is replaced by one row per class of the new data, every row started
  at the MEAN of the base's class embeddings (the base's "average class"): the condition starts where the base
  model is least committed, and the new rows separate as they train. Said at start-up.
- `finetune.lora_rank R` (`--lora-rank`): the GPT is frozen and the `finetune.lora_targets` Linear layers get
  rank-R adapters (models/lora.py); a class-conditioned model also trains its (small) class table.
  `finetune.freeze` (`--freeze GLOB`) freezes the matching parameters of a plain fine-tune.
- The adapter file `checkpoints/adapter.ckpt` (best valid loss) holds only the trained tensors and records its
  base (`--init` file, path + SHA-256); loading/adapters.py merges base + adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.transformer import TransformerConfig
from vgs_cli.errors import VgsError
from vgs_cli.models.lora import add_lora, is_lora_key, matches
from vgs_cli.train.trainer_utils import note

ADAPTER_FILE = "adapter.ckpt"


def class_keys(cfg: TransformerConfig) -> list[str]:
    """State-dict keys of the class table(s) (`Tensor[num_classes, n_embd]`)."""
    m = cfg.model
    return ["cls_embedder.weight"] if m.condition == "feats+class" else (["embedder.weight"] if m.uses_class else [])


def new_class_state(cfg: TransformerConfig, state: dict[str, torch.Tensor],
                    model: nn.Module) -> dict[str, torch.Tensor]:
    """`state` with each class table replaced by `num_classes` rows equal to the mean of the base's rows."""
    state = dict(state)
    if not class_keys(cfg):
        note(f"--new-classes: this transformer is not class-conditioned (condition {cfg.model.condition}); "
             "it has no class table to replace")
    for key in class_keys(cfg):
        old = state[key]
        rows = model.state_dict()[key].shape[0]
        state[key] = old.mean(dim=0, keepdim=True).expand(rows, -1).clone()
        note(f"--new-classes: new class table {key} of {rows} rows, each started at the mean of the base's "
             f"{old.shape[0]} class embeddings")
    return state


def prepare_gpt(gpt: nn.Module, cfg: TransformerConfig, has_base: bool) -> tuple[int, int]:
    """Apply LoRA / freezing to `gpt` in place; returns (trainable, total) parameter counts."""
    ft = cfg.finetune
    if ft.lora_rank:
        if not has_base:
            raise VgsError("--lora-rank trains adapters on a frozen base: pass --init BASE_TRANSFORMER")
        gpt.requires_grad_(False)
        try:
            add_lora(gpt, ft.lora_rank, ft.scale_alpha, ft.lora_targets)
        except ValueError as exc:
            raise VgsError(f"--lora-targets: {exc} (layer names: blocks.<i>.attn.query|key|value|proj, "
                           "blocks.<i>.mlp.0|2, head)") from None
        for key in class_keys(cfg):
            gpt.get_parameter(key).requires_grad_(True)
    if ft.freeze:
        hit = [n for n, p in gpt.named_parameters() if matches(n, ft.freeze)]
        if not hit:
            raise VgsError(f"--freeze {' '.join(ft.freeze)} matches no parameter (names: tok_emb.weight, "
                           "blocks.<i>.attn.query.weight, ..., head.weight)")
        for name in hit:
            gpt.get_parameter(name).requires_grad_(False)
    total = sum(p.numel() for n, p in gpt.named_parameters() if not is_lora_key(n))
    trainable = sum(p.numel() for p in gpt.parameters() if p.requires_grad)
    if ft.lora_rank or ft.freeze:
        note(f"fine-tuning {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)")
    return trainable, total


def adapter_state(gpt: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: every trainable parameter (LoRA pairs, a new class table)."""
    return {n: p.detach() for n, p in gpt.named_parameters() if p.requires_grad}


def write_adapter(path: Path, gpt: nn.Module, cfg: TransformerConfig, extra: dict[str, Any],
                  base: dict[str, str] | None) -> Path:
    if not base:
        raise VgsError("a LoRA run needs its base recorded (run it with --init BASE)")
    ft = cfg.finetune
    info = {"base_path": base["path"], "base_sha256": base["sha256"], "rank": ft.lora_rank,
            "alpha": ft.scale_alpha, "targets": list(ft.lora_targets)}
    return save_checkpoint(path, stage="transformer", config=cfg.to_dict(), state_dict=adapter_state(gpt),
                           extra={**extra, "adapter": info})


def adapter_loss(path: Path) -> float | None:
    """The valid loss recorded in an existing adapter file (None when there is none)."""
    from vgs_cli.checkpoint import load_checkpoint

    if not path.is_file():
        return None
    loss = load_checkpoint(path, "transformer", mmap=True).get("extra", {}).get("metrics", {}).get("loss")
    return float(loss) if loss is not None else None


def write_merged(src: str | Path, out: str | Path, base: str | Path | None = None, force: bool = False) -> Path:
    """`src` (a LoRA run folder or checkpoint, or an adapter file; its base via the record or `base`) -> one plain
    transformer checkpoint `out` (weights W + alpha/rank B A; `finetune` reset; `extra.merged_from`).

    An existing `out` is replaced only with `force`, and never when it is a file the merge stands on (`src`, its
    base): the adapter would no longer load."""
    from vgs_cli.fsutil import file_sha256
    from vgs_cli.loading.adapters import merge_inputs
    from vgs_cli.loading.models import load_model, resolve_checkpoint
    from vgs_cli.train.init import plain_config

    src = resolve_checkpoint(src)  # a run folder: its best.ckpt, else last.ckpt
    model, cfg, ckpt = load_model(src, "transformer", base=base)
    if not cfg.finetune.lora_rank:
        raise VgsError(f"{src} has no LoRA adapters to merge (it is already a plain transformer)")
    _check_merge_output(Path(out), merge_inputs(ckpt, src, base), force)
    extra = {k: v for k, v in ckpt.get("extra", {}).items() if k != "adapter"}
    extra["merged_from"] = {"path": str(Path(src).resolve()), "sha256": file_sha256(src),
                            "base": ckpt.get("extra", {}).get("adapter") or extra.get("init")}
    config = plain_config(cfg).to_dict()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return save_checkpoint(out, stage="transformer", config=config, state_dict=state, extra=extra)


def _check_merge_output(out: Path, inputs: list[Path], force: bool) -> None:
    """Refuse to overwrite an input of the merge (always) or any existing file (unless `force`)."""
    if not out.exists():
        return
    for i, path in enumerate(inputs):
        if path.exists() and out.samefile(path):  # links and other spellings of the same file too
            what = "the checkpoint being merged" if i == 0 else "the adapter's base"
            raise VgsError(f"-o {out} is {what} ({path}); writing the merge there would destroy a file the "
                           "adapter needs: pick another output path")
    if not force:
        raise VgsError(f"-o {out} already exists; use --force to replace it or pick another output path")
