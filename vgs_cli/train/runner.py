"""`run(stage, ...)`: resolve a stage's config, build its task and train it (what `vgs train <stage>` calls).

Config resolution for a new run: preset -> `--config` JSON (merged over the preset, strict) -> `--set`
overrides. For a run folder with a checkpoint its `config.json` is authoritative (one that failed before
its first checkpoint takes the new settings): only scheduling fields of
`train` (RESUMABLE_FIELDS) may be changed, so `--steps 2000` extends a finished run, while a different
model or optimiser setting is refused instead of silently mixing two experiments in one folder.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from vgs_cli.config.base import apply_overrides, preset_names
from vgs_cli.errors import DataError, VgsError
from vgs_cli.train import codebook, melception, transformer, vggishish, vocoder
from vgs_cli.train import distributed as D
from vgs_cli.train.config_files import config_file_dict, deep_merge, read_json
from vgs_cli.train.init import InitSource, init_config, read_init
from vgs_cli.train.trainer import Trainer
from vgs_cli.train.trainer_utils import note

# stage name -> module exposing PRESETS, CONFIG_CLASS and make_task(cfg, data_dir, **stage_opts)
STAGE_MODULES: dict[str, ModuleType] = {
    "codebook": codebook,
    "transformer": transformer,
    "vocoder": vocoder,
    "melception": melception,
    "vggishish": vggishish,
}

# train.* fields that only change how long / how often, never what is learned: allowed on resume.
RESUMABLE_FIELDS = ("steps", "eval_every", "eval_batches", "ckpt_every", "keep_last", "log_every", "num_workers",
                    "patience")


def stage_module(stage: str) -> ModuleType:
    if stage not in STAGE_MODULES:
        raise VgsError(f"unknown stage {stage!r} (choose from {', '.join(STAGE_MODULES)})")
    return STAGE_MODULES[stage]


def new_config(module: Any, stage: str, preset: str | None, config_file: str | Path | None,
               overrides: list[str] | tuple[str, ...]) -> Any:
    presets = module.PRESETS
    preset = preset or "tiny"
    if preset not in presets:
        raise VgsError(f"unknown preset {preset!r} for {stage} (choose from {preset_names(presets)})")
    data = deep_merge(presets[preset].to_dict(), config_file_dict(config_file))
    cfg = module.CONFIG_CLASS.from_dict(data, where=f"{stage} config")
    return apply_overrides(cfg, list(overrides))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def resumed_config(module: Any, stage: str, saved: dict[str, Any], config_file: str | Path | None,
                   overrides: list[str] | tuple[str, ...], run_dir: Path) -> Any:
    """The saved config with the allowed train.* changes from the config file and overrides applied."""
    if saved.get("stage") not in (None, stage):
        raise VgsError(f"{run_dir} is a {saved.get('stage')!r} run, not {stage!r}; use another --run folder")
    base = module.CONFIG_CLASS.from_dict(saved["config"], where=f"{run_dir / 'config.json'}")
    data = deep_merge(base.to_dict(), config_file_dict(config_file))
    cfg = apply_overrides(module.CONFIG_CLASS.from_dict(data, where=f"{stage} config"), list(overrides))
    allowed = {f"train.{f}" for f in RESUMABLE_FIELDS}
    changed = [d for d in _differences(base.to_dict(), cfg.to_dict()) if d not in allowed]
    if changed:
        raise VgsError(f"{run_dir} already holds a run with a different config ({', '.join(changed[:6])}); "
                       f"on resume only train.{{{','.join(RESUMABLE_FIELDS)}}} may change - use a new --run folder")
    return cfg


def run(stage: str, *, data: str | Path, preset: str | None, run_dir: str | Path,
        config_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
        device: str | None = None, require_resume: bool = False, init: str | Path | None = None,
        **stage_opts: Any) -> dict[str, Any]:
    """Train `stage` into `run_dir` (resuming it when it has a checkpoint) and return the final metrics.

    `init` (`--init CKPT`, train/init.py): a new run starts from that checkpoint's weights and config."""
    module = stage_module(stage)
    run_dir = Path(run_dir)
    data_dir = Path(data)
    if not data_dir.exists():
        raise DataError(f"data folder not found: {data_dir}")
    if run_dir.exists() and not run_dir.is_dir():
        raise VgsError(f"--run {run_dir} exists and is not a folder")
    env = D.init_distributed(device)  # so every rank sees the folder before rank 0 writes to it
    try:
        source, record = _init_source(init, stage, run_dir, env.is_main)
        if source is not None:  # a new run (no checkpoint yet): the --init file's config, then the overrides
            cfg, preset = init_config(module, stage, source, config_file, overrides, env.is_main), "init"
        else:
            cfg, preset = _resolve(module, stage, preset, run_dir, config_file, overrides, require_resume,
                                   env.is_main)
        task = module.make_task(cfg, data_dir, **stage_opts)
        task.init_record = record  # where the weights came from (a LoRA adapter records it as its base)
        check = getattr(task, "check_weights_source", None)  # e.g. a transformer: its data's features made
        if callable(check):  # the way its (--init or resumed) weights' training features were
            check(source.path if source is not None else run_dir / "checkpoints" / "last.ckpt")
        meta = {"preset": preset, "data": str(data_dir.resolve()),
                "stage_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in stage_opts.items()}}
        return Trainer(task, run_dir, device=env.device, meta=meta, init=source).fit()
    finally:
        if env.created:
            D.destroy()


def _init_source(init: str | Path | None, stage: str, run_dir: Path,
                 is_main: bool) -> tuple[InitSource | None, dict[str, str] | None]:
    """(weights to start from, their record). A run folder with a checkpoint resumes: --init is not re-read,
    its recorded source is kept."""
    saved = run_dir / "config.json"
    recorded = read_json(saved, "run config").get("init") if saved.is_file() else None
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        if init is not None and is_main:
            note(f"note: {run_dir} already has checkpoints/last.ckpt: resuming it (--init {init} not re-read)")
        return None, recorded
    if init is None:
        return None, recorded
    source = read_init(init, stage)
    return source, source.record


def _resolve(module: Any, stage: str, preset: str | None, run_dir: Path, config_file: str | Path | None,
             overrides: list[str] | tuple[str, ...], require_resume: bool, is_main: bool) -> tuple[Any, str]:
    """(config, preset name) for a new run or for resuming the one in `run_dir`."""
    saved_path = run_dir / "config.json"
    has_ckpt = (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = read_json(saved_path, "run config") if saved_path.is_file() else None
    D.barrier()
    if require_resume and not has_ckpt:
        raise VgsError(f"--resume: {run_dir} has no checkpoints/last.ckpt to resume from")
    if saved is None or not has_ckpt:  # a run that never saved a step has nothing to protect: new settings win
        return new_config(module, stage, preset, config_file, overrides), preset or "tiny"
    cfg = resumed_config(module, stage, saved, config_file, overrides, run_dir)
    if preset and saved.get("preset") not in (None, preset) and is_main:
        note(f"note: {run_dir} was created with preset {saved['preset']!r}; its config.json is used "
             f"(--preset {preset} ignored)")
    return cfg, saved.get("preset") or preset or "tiny"
