"""Official PyTorch-Lightning runs (codebook / transformer `.ckpt` + `configs/*-project.yaml`) -> vgs checkpoints.

A transformer `.ckpt` holds three parts (see ../shared/reference/checkpoint_keys/README.md): the GPT under
`transformer.*`, a complete copy of its codebook under `first_stage_model.*` and the token permuter under
`first_stage_permuter.*`. Both models are imported; the transformer's `extra` then records what `vgs generate`
needs: condition, feature frames, visual extractor and its settings, class names, and (filled in by the
importer once the file is written) the codebook path and SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vgs_cli.config.codebook import PRESETS as CODEBOOK_PRESETS
from vgs_cli.config.codebook import CodebookConfig
from vgs_cli.config.spec import SPEC
from vgs_cli.config.transformer import PRESETS as TRANSFORMER_PRESETS
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.official.convert import (
    Converted,
    State,
    check_permuter,
    disagree,
    drop_attn_masks,
    head_count,
    infer_gpt_config,
    infer_vqgan_config,
    split_codebook,
    with_prefix,
)
from vgs_cli.official.yaml_args import dig, read_yaml

LIGHTNING_KEYS = ("pytorch-lightning_version", "callbacks", "optimizer_states", "global_step", "epoch")
TRANSFORMER_PREFIXES = ("transformer.", "first_stage_model.", "first_stage_permuter.")
# the official feature folders / file list spellings -> our extractor names (as `vgs prepare --from-features`)
EXTRACTOR_HINTS = {"resnet50": "resnet50", "bninception": "bninception", "bn inception": "bninception"}
GPT_CLASSES = {"GPTFeats": ("feats", "none"), "GPTClass": ("class",), "GPTFeatsClass": ("feats+class",)}
RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision's ImageNet weights; the hash is the SHA-256 prefix


def is_lightning(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and any(k in obj for k in LIGHTNING_KEYS)


def lightning_kind(state: State) -> str:
    """"transformer" or "codebook" by the state_dict's prefixes."""
    if any(k.startswith("transformer.") for k in state):
        return "transformer"
    if "quantize.embedding.weight" in state:
        return "codebook"
    raise CheckpointError("a Lightning checkpoint with neither a GPT (transformer.*) nor a codebook "
                          f"(quantize.embedding.weight); first keys: {', '.join(list(state)[:4])}")


def run_checkpoint(folder: Path) -> Path:
    """The checkpoint of an unpacked run folder: the single `checkpoints/*.ckpt`, or the single one not
    called `last.ckpt` (Lightning's best-by-validation file, which the paper used)."""
    ckpts = sorted((folder / "checkpoints").glob("*.ckpt"))
    if len(ckpts) > 1:
        ckpts = [p for p in ckpts if p.name != "last.ckpt"] or ckpts
    if len(ckpts) != 1:
        found = ", ".join(p.name for p in ckpts) or "none"
        raise VgsError(f"{folder}/checkpoints: expected one .ckpt, found {found}; pass the file to import")
    return ckpts[0]


def project_config(ckpt: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The run's `configs/*-project.yaml` next to `checkpoints/` (the newest, if resumed runs wrote several)."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    files = sorted((run / "configs").glob("*-project.yaml"))
    if not files:
        return None, None
    return read_yaml(files[-1]), files[-1]


def _dataset(n_embed: int) -> str:
    return "vas" if n_embed == 128 else "vggsound"


# ------------------------------------------------------------------------------------------- codebook

def convert_codebook(state: State, project: dict[str, Any] | None, *, where: str,
                     provenance: dict[str, Any]) -> Converted:
    """A codebook `.ckpt` state_dict -> vgs `codebook` checkpoint content. The training loss's weights
    (`loss.discriminator.*`, `loss.perceptual_loss.*`) are kept as `aux_state` "disc" / "lpaps" so that
    `vgs train codebook --init` continues against the published discriminator."""
    weights, loss_keys = split_codebook(state)
    params = dig(project or {}, "model.params") or {}
    dd = {**(params.get("ddconfig") or {}), **{k: params[k] for k in ("n_embed", "embed_dim") if k in params}}
    model = infer_vqgan_config(weights, dd or None, where=where)
    cfg = CODEBOOK_PRESETS[_dataset(model.n_embed)].replace(model=model)
    aux = {name: with_prefix(state, f"loss.{prefix}.") for name, prefix in (("disc", "discriminator"),
                                                                           ("lpaps", "perceptual_loss"))}
    aux = {name: sd for name, sd in aux.items() if sd}
    notes = []
    if "disc" in aux:
        cfg = cfg.replace(loss=cfg.loss.replace(**disc_size(aux["disc"], where)))
    if loss_keys:
        notes.append(f"kept {len(loss_keys)} loss.* tensors apart from the model (the PatchGAN, for `vgs train "
                     "codebook --init`, and LPAPS, whose released weights are random, issue #13)")
    return Converted("codebook", cfg.to_dict(), weights, {"official": provenance, "loss_keys": len(loss_keys)},
                     notes, aux_state=aux)


def disc_size(disc: State, where: str) -> dict[str, int]:
    """The PatchGAN's width and depth from its tensors (`main.<i>.weight` convs: n_layers + 2 of them)."""
    convs = sorted(int(k.split(".")[1]) for k, v in disc.items() if k.endswith(".weight") and v.dim() == 4)
    if len(convs) < 3 or "main.0.weight" not in disc:
        raise CheckpointError(f"{where}: loss.discriminator.* is not a PatchGAN (convs {convs})")
    return {"disc_ndf": int(disc["main.0.weight"].shape[0]), "disc_layers": len(convs) - 2}


# ---------------------------------------------------------------------------------------- transformer

def extractor_settings(name: str) -> dict[str, Any]:
    """What the transformer's features were, in the keys `vgs generate` compares.

    resnet50: the settings `vgs prepare --extractor resnet50` records with torchvision's weights (the reference
    extracted with Resize(256) + CenterCrop(224), ImageNet mean/std), except the weights' SHA-256, which is
    unknown offline: it is left out, so generation checks no hash (torch.hub checks the published prefix when
    it downloads the file, and ingested official features carry no hash either); the prefix is kept. bninception (RGB + flow TSN features): as the
    official-feature ingestion records it; there is no such extractor for videos, so generating from a
    video fails clearly while generating from ingested features works."""
    if name == "resnet50":
        from vgs_cli.loading.extractors import get_spec, resize_short_side

        spec = get_spec("resnet50")
        size = spec.default_image_size
        return {"dim": spec.dim, "image_size": size, "resize_short": resize_short_side(size),
                "mean": list(spec.mean), "std": list(spec.std), "random_weights": False, "weights": RESNET50_FILE,
                "weights_sha256_prefix": RESNET50_FILE.split("-")[1].split(".")[0], "fps": SPEC.fps,
                "frame_path": spec.frame_path,
                "source": "official SpecVQGAN transformer"}
    if name == "bninception":
        return {"dim": 2048, "model": "TSN BN-Inception RGB (1024) + flow (1024), RegNet", "fps": SPEC.fps,
                "source": "official SpecVQGAN transformer"}
    raise VgsError(f"unknown extractor {name!r} for an official transformer (resnet50 or bninception)")


def _extractor(project: dict[str, Any] | None, entry: dict[str, Any] | None, override: str | None,
               where: str) -> tuple[str | None, dict[str, Any]]:
    """(name, settings): --extractor, else what a vgs export recorded, else resnet50 / bninception from the
    project yaml's feature folders and the official file list; (None, {}) when nothing tells."""
    if override:
        return override, extractor_settings(override)
    ours = dig(project or {}, "vgs") or {}
    if ours.get("extractor"):
        return str(ours["extractor"]), dict(ours.get("extractor_settings") or {})
    found = set()
    paths = " ".join(str(dig(project or {}, f"data.params.{k}") or "") for k in ("rgb_feats_dir_path",
                                                                                  "flow_feats_dir_path"))
    for text in (paths.lower(), str((entry or {}).get("features") or "").lower()):
        found |= {name for hint, name in EXTRACTOR_HINTS.items() if hint in text}
    if len(found) > 1:
        raise CheckpointError(f"{where}: its config and the official file list disagree on the visual features "
                              f"({', '.join(sorted(found))}); pass --extractor")
    if not found:
        return None, {}
    name = found.pop()
    return name, extractor_settings(name)


def _condition_hint(project: dict[str, Any] | None, entry: dict[str, Any] | None) -> bool:
    """True for the paper's "No Feats" runs (random features instead of video)."""
    return bool(dig(project or {}, "data.params.replace_feats_with_random")) or \
        str((entry or {}).get("condition") or "").lower() == "no feats"


def _check_gpt_yaml(gpt_cfg: Any, project: dict[str, Any] | None, where: str) -> None:
    params = dig(project or {}, "model.params.transformer_config") or {}
    gpt_yaml = dig(params, "params.GPT_config") or {}
    have = {"vocab_size": gpt_cfg.vocab_size, "block_size": gpt_cfg.block_size, "n_layer": gpt_cfg.n_layer,
            "n_embd": gpt_cfg.n_embd}
    for key, value in have.items():
        if key in gpt_yaml and int(gpt_yaml[key]) != value:
            raise disagree(where, f"GPT_config.{key}", value, gpt_yaml[key])
    target = str(params.get("target", "")).rsplit(".", 1)[-1]
    if target in GPT_CLASSES and gpt_cfg.condition not in GPT_CLASSES[target]:
        raise disagree(where, "the condition", gpt_cfg.condition, target)
    sample = dig(project or {}, "data.params.feat_sampler_cfg.params.feat_sample_size")
    if gpt_cfg.condition in ("feats", "feats+class") and sample is not None and int(sample) != gpt_cfg.feat_frames:
        raise disagree(where, "feat_sample_size", gpt_cfg.feat_frames, sample)


def _gpt_parts(state: State, where: str) -> tuple[State, State]:
    unknown = [k for k in state if not k.startswith(TRANSFORMER_PREFIXES)]
    if unknown:
        raise CheckpointError(f"{where}: unexpected tensors outside transformer.* / first_stage_model.* / "
                              f"first_stage_permuter.*: {', '.join(unknown[:5])}")
    perm = with_prefix(state, "first_stage_permuter.")
    if set(perm) != {"forward_shuffle_idx", "backward_shuffle_idx"}:
        raise CheckpointError(f"{where}: expected first_stage_permuter.forward_shuffle_idx and "
                              f".backward_shuffle_idx, found {sorted(perm) or 'none'}")
    return with_prefix(state, "transformer."), perm


def _classes(given: list[str] | None, model: Any, where: str) -> tuple[list[str], str | None]:
    """Class names in label order: --classes, else VAS's 8 (sorted, as the reference), else indices."""
    if given:
        if model.uses_class and len(given) != model.num_classes:
            raise VgsError(f"{where}: the class list has {len(given)} names but the model embeds "
                           f"{model.num_classes} classes")
        return list(given), None
    if not model.uses_class:
        return [], None
    from vgs_cli.data.labels import VAS_CLASSES

    if model.num_classes == len(VAS_CLASSES):
        return list(VAS_CLASSES), None
    return [str(i) for i in range(model.num_classes)], (
        f"class names unknown: recorded the indices 0..{model.num_classes - 1} (the reference's sorted class "
        "list); pass --classes FILE (one name per line, in that order) to use names with --class")


def convert_transformer(state: State, project: dict[str, Any] | None, *, where: str, provenance: dict[str, Any],
                        entry: dict[str, Any] | None = None, extractor: str | None = None,
                        classes: list[str] | None = None, n_head: int | None = None) -> tuple[Converted, Converted]:
    """A transformer `.ckpt` state_dict -> (codebook, transformer) checkpoint contents. `n_head`: `--n-head`,
    used when the project yaml does not give the head count (see `convert.head_count`)."""
    gpt, perm = _gpt_parts(state, where)
    first = dig(project or {}, "model.params.first_stage_config") or {}
    codebook = convert_codebook(with_prefix(state, "first_stage_model."), {"model": first} if first else None,
                                where=f"{where} (first_stage_model)", provenance=provenance)
    cb_model = CodebookConfig.from_dict(codebook.config).model
    check_permuter(perm["forward_shuffle_idx"], perm["backward_shuffle_idx"], cb_model.grid, where=where)
    gpt, n_masks = drop_attn_masks(gpt, where=where)
    heads, heads_from = head_count(gpt, dig(project or {}, "model.params.transformer_config.params.GPT_config.n_head"),
                                   n_head, yaml_name=str(provenance.get("project_yaml", "the project yaml")),
                                   where=where)
    provenance = {**provenance, "n_head": heads, "n_head_from": heads_from}
    model = infer_gpt_config(gpt, cb_model.grid, n_head=heads, no_feats=_condition_hint(project, entry), where=where)
    _check_gpt_yaml(model, project, where)
    name, settings = _extractor(project, entry, extractor, where) if model.uses_feats else (None, {})
    cfg = TRANSFORMER_PRESETS[_dataset(model.vocab_size)].replace(model=model, extractor=name or "")
    notes = [f"{heads} attention heads ({heads_from})"]
    notes += [f"dropped {n_masks} attn.mask buffers (each checked to be the causal mask)"] if n_masks else []
    if model.uses_feats and name is None:
        notes.append("could not tell which visual features this transformer was trained on (no project yaml, "
                     "not a listed run): re-import with --extractor resnet50|bninception before generating")
    names, note = _classes(classes or dig(project or {}, "vgs.classes"), model, where)
    notes += [note] if note else []
    extra = {
        "condition": model.condition,
        "feat_frames": model.feat_frames if model.uses_feats else 0,
        "extractor": name or "",
        "extractor_settings": settings,
        "classes": names,
        "codebook_config": codebook.config,
        "official": provenance,
    }
    return codebook, Converted("transformer", cfg.to_dict(), gpt, extra, notes)
