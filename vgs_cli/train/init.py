"""`vgs train STAGE --init CKPT`: start a new run from another checkpoint's weights (fine-tuning).

Unlike resuming (`checkpoints/last.ckpt` of the same run folder), `--init` takes only weights: a new
optimiser, step 0, a new run folder. The run's config is the checkpoint's own (so the model has the same
shapes), then `--config` / `--set` / the stage's options on top; an override that changes a weight's shape is
an error naming the weight. The run folder's `config.json` and every checkpoint's `extra.init` record the file
and its SHA-256.

What comes along besides the model (`InitSource.states`, by trainer model name):
- "model": the stage's model (a LoRA transformer arrives merged, see loading/adapters.py);
- "disc": the codebook's PatchGAN, from an imported official codebook (`aux_state.disc`, the official
  `loss.discriminator.*`) or a vgs run's `train_state.models.disc`, so adversarial training resumes against
  the trained discriminator instead of a fresh one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vgs_cli.errors import VgsError
from vgs_cli.fsutil import file_sha256

State = dict[str, torch.Tensor]
# (model name, checkpoint state, freshly built model) -> the state to load (e.g. a new class table)
Adapt = Callable[[str, State, nn.Module], State]


@dataclass
class InitSource:
    path: Path
    sha256: str
    stage: str
    config: dict[str, Any]
    states: dict[str, State] = field(default_factory=dict)

    @property
    def record(self) -> dict[str, str]:
        """What the run folder and checkpoints record: where the weights came from."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256}


def read_init(path: str | os.PathLike, stage: str) -> InitSource:
    """The weights and config of `path` (a vgs checkpoint of `stage`, a run folder, an imported official file)."""
    from vgs_cli.loading.models import load_model, resolve_checkpoint

    path = resolve_checkpoint(path)
    if not Path(path).is_file():
        raise VgsError(f"--init {path}: checkpoint not found")
    model, cfg, ckpt = load_model(path, stage)
    config = (plain_config(cfg) if hasattr(cfg, "finetune") else cfg).to_dict()
    states = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    # the other trainable models of a vgs run (discriminators); an imported codebook's PatchGAN. Not "lpaps":
    # the released LPAPS weights are random (issue #13); the run's own --lpaps network is used instead.
    for name, state in {**((ckpt.get("train_state") or {}).get("models") or {}),
                        **{k: v for k, v in (ckpt.get("aux_state") or {}).items() if k == "disc"}}.items():
        states[name] = dict(state)
    return InitSource(Path(path), file_sha256(path), stage, config, states)


def load_init(models: dict[str, nn.Module], init: InitSource, adapt: Adapt | None = None) -> list[str]:
    """Load `init`'s weights into the freshly built `models` (before the optimisers exist); returns the names
    loaded. A weight whose shape the run's config changed is a VgsError naming it."""
    from vgs_cli.loading.models import load_state_strict

    loaded = []
    for name, state in init.states.items():
        if name not in models:
            continue
        model = models[name]
        if adapt is not None:
            state = adapt(name, state, model)
        own = model.state_dict()
        for key, value in state.items():
            if key in own and tuple(own[key].shape) != tuple(value.shape):
                raise VgsError(f"--init {init.path}: weight {key!r} ({name}) is {list(value.shape)} in the checkpoint "
                               f"but {list(own[key].shape)} with this run's config; drop the override that changes "
                               "it (or train from scratch)" + _hint(key))
        load_state_strict(model, state, f"--init {init.path} ({name})")
        loaded.append(name)
    return loaded


def _hint(key: str) -> str:
    return " or pass --new-classes for a new class list" if "embedder" in key and "feat" not in key else ""


def init_config(module: Any, stage: str, init: InitSource, config_file: str | Path | None,
                overrides: list[str] | tuple[str, ...], is_main: bool = True) -> Any:
    """The run's config: the checkpoint's, then `--config`, then `--set` (strict, as for a preset). A LoRA
    transformer without a train.lr of its own learns at LORA_LR_SCALE x the base's rate."""
    from vgs_cli.config.base import apply_overrides, split_override
    from vgs_cli.train.config_files import config_file_dict, deep_merge

    if init.stage != stage:
        raise VgsError(f"--init {init.path} is a {init.stage} checkpoint, not {stage}")
    from_file = config_file_dict(config_file)
    data = deep_merge(init.config, from_file)
    cfg = apply_overrides(module.CONFIG_CLASS.from_dict(data, where=f"--init {init.path} config"), list(overrides))
    lr_given = "lr" in (from_file.get("train") or {}) or any(split_override(o)[0] == "train.lr" for o in overrides)
    if stage == "transformer" and cfg.finetune.lora_rank and not lr_given:
        return lora_learning_rate(cfg, is_main)
    return cfg


# LoRA's B starts at zero and its A x B product moves slowly: at the base's own rate a rank-8 adapter on the
# README's synthetic classes was still far from converged after 120 steps and tied training from scratch on
# one seed of three; at 10x it beat both scratch and its 1x self on all three (about 10x is also the usual
# LoRA vs full fine-tuning ratio). Only the default: `--set train.lr=...` or a --config train.lr wins.
LORA_LR_SCALE = 10.0


def lora_learning_rate(cfg: Any, is_main: bool = True) -> Any:
    """`cfg` (a LoRA transformer config from --init) with train.lr = LORA_LR_SCALE x the base's, said once."""
    from vgs_cli.train.trainer_utils import note

    lr = cfg.train.lr * LORA_LR_SCALE
    if is_main:
        note(f"LoRA: learning rate {lr:g} ({LORA_LR_SCALE:g} x the base's {cfg.train.lr:g}; "
             "--set train.lr=... to choose another)")
    return cfg.replace(train=cfg.train.replace(lr=lr), finetune=cfg.finetune.replace(lr_scale=LORA_LR_SCALE))


def plain_config(cfg: Any) -> Any:
    """A fine-tuned transformer config as a plain one (LoRA arrives merged): no adapters or frozen globs, and
    the learning rate the run's base had (a LoRA run's 10x undone), so a later LoRA run scales it once."""
    return cfg.replace(finetune=type(cfg.finetune)(), train=cfg.train.replace(lr=cfg.train.lr / cfg.finetune.lr_scale))
