"""Export a vgs transformer (+ its codebook) in the official SpecVQGAN layout: the inverse of the import.

    run = export_specvqgan("runs/gpt/checkpoints/best.ckpt", "exported/2024-01-01T00-00-00_vas_transformer")
    # run/checkpoints/last.ckpt     Lightning-1.2-style dict, state_dict = first_stage_model.* +
    #                               first_stage_permuter.* + transformer.* (with the attn.mask buffers)
    # run/configs/<stamp>-project.yaml   the model/data fields the official config has

The key order and wrapping follow ../shared/reference/checkpoint_keys (first_stage_model, permuter, GPT;
`blocks.<i>.attn.mask` before `attn.key`). `callbacks` is left empty (no Lightning classes are pickled), so
the file loads with `torch.load(weights_only=True)` as it is. The yaml adds a top-level `vgs:` section
(extractor, its settings, class names), which the official code never reads and `vgs import` restores, so
export -> import round-trips everything generation needs. Official code uses GroupNorm(32) in the codebook,
so codebooks trained with other `norm_groups` are refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.config.codebook import CodebookConfig, VQGANConfig
from vgs_cli.config.transformer import GPTConfig, TransformerConfig
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import atomic_path
from vgs_cli.models.gpt import to_sequence
from vgs_cli.official.convert import OFFICIAL_GN_GROUPS

LIGHTNING_VERSION = "1.2.10"
_GPT_CLASS = {"feats": "GPTFeats", "none": "GPTFeats", "class": "GPTClass", "feats+class": "GPTFeatsClass"}
_FEATURE_DIRS = {
    "resnet50": {"rgb_feats_dir_path": "./data/{ds}/features/*/feature_resnet50_dim2048_21.5fps"},
    "bninception": {"rgb_feats_dir_path": "./data/{ds}/features/*/feature_rgb_bninception_dim1024_21.5fps",
                    "flow_feats_dir_path": "./data/{ds}/features/*/feature_flow_bninception_dim1024_21.5fps"},
}


def official_state(gpt: dict[str, torch.Tensor], codebook: dict[str, torch.Tensor], gpt_cfg: GPTConfig
                   ) -> dict[str, torch.Tensor]:
    """The official transformer state_dict (names, order, masks, permuter) from our two state_dicts."""
    h, w = gpt_cfg.grid
    forward = to_sequence(torch.arange(h * w).view(1, h, w))[0]
    state: dict[str, torch.Tensor] = {f"first_stage_model.{k}": v for k, v in codebook.items()}
    state["first_stage_permuter.forward_shuffle_idx"] = forward
    state["first_stage_permuter.backward_shuffle_idx"] = torch.argsort(forward)
    size = gpt_cfg.block_size
    mask = torch.ones(size, size).tril_().view(1, 1, size, size)
    for key, value in gpt.items():
        if key.endswith(".attn.key.weight"):  # the buffer precedes the attention's child modules
            state[f"transformer.{key[:-len('key.weight')]}mask"] = mask.clone()
        state[f"transformer.{key}"] = value
    return state


def _ddconfig(m: VQGANConfig) -> dict[str, Any]:
    return {"double_z": False, "z_channels": m.z_channels, "resolution": m.frames, "in_channels": m.in_channels,
            "out_ch": m.out_channels, "ch": m.ch, "ch_mult": list(m.ch_mult), "num_res_blocks": m.num_res_blocks,
            "attn_resolutions": list(m.attn_resolutions), "dropout": m.dropout}


def project_yaml(g: GPTConfig, c: VQGANConfig, extractor: str, dataset: str) -> dict[str, Any]:
    """The fields of an official `*-project.yaml` that describe this model (and that the import reads)."""
    tparams: dict[str, Any] = {"GPT_config": {"vocab_size": g.vocab_size, "block_size": g.block_size,
                                              "n_layer": g.n_layer, "n_head": g.n_head, "n_embd": g.n_embd}}
    if g.uses_feats or g.condition == "none":
        tparams["feat_embedding_config"] = {"target": "torch.nn.Conv1d", "params": {
            "in_channels": g.feat_dim, "out_channels": g.n_embd, "kernel_size": 1, "padding": 0}}
    if g.uses_class:
        tparams["token_embedding_config"] = {"target": "torch.nn.Embedding", "params": {
            "num_embeddings": g.num_classes, "embedding_dim": g.n_embd}}
    data: dict[str, Any] = {"mel_num": c.n_mels, "spec_crop_len": c.frames, "feat_depth": g.feat_dim,
                            "replace_feats_with_random": g.condition == "none",
                            "feat_sampler_cfg": {"target": "specvqgan.data.vas.ResampleFrames", "params": {
                                "feat_sample_size": g.feat_frames if g.uses_feats else 1}}}
    data.update({k: v.format(ds=dataset) for k, v in _FEATURE_DIRS.get(extractor, {}).items()})
    return {
        "model": {"target": "specvqgan.models.cond_transformer.Net2NetTransformer", "params": {
            "cond_stage_key": "target" if g.condition == "class" else "feature",
            "transformer_config": {"target": f"specvqgan.modules.transformer.mingpt.{_GPT_CLASS[g.condition]}",
                                   "params": tparams},
            "first_stage_permuter_config": {"target": "specvqgan.modules.transformer.permuter.ColumnMajor",
                                            "params": {"H": g.grid[0], "W": g.grid[1]}},
            "first_stage_config": {"target": "specvqgan.models.vqgan.VQModel", "params": {
                "embed_dim": c.embed_dim, "n_embed": c.n_embed, "ddconfig": _ddconfig(c),
                "lossconfig": {"target": "specvqgan.modules.losses.DummyLoss"}}},
        }},
        "data": {"params": data},
    }


def export_specvqgan(transformer: str | os.PathLike, out_dir: str | os.PathLike, *,
                     codebook: str | os.PathLike | None = None, dataset: str | None = None) -> Path:
    """Write `out_dir/checkpoints/last.ckpt` + `out_dir/configs/<stamp>-project.yaml`; returns `out_dir`."""
    t_ckpt = load_checkpoint(transformer, stage="transformer")
    cb_path = codebook or t_ckpt.get("extra", {}).get("codebook_path")
    if not cb_path:
        raise VgsError(f"{transformer} does not record its codebook; pass the codebook checkpoint")
    cb_ckpt = load_checkpoint(cb_path, stage="codebook")
    tcfg = TransformerConfig.from_dict(t_ckpt["config"])
    g, c = tcfg.model, CodebookConfig.from_dict(cb_ckpt["config"]).model
    if c.norm_groups != OFFICIAL_GN_GROUPS:
        raise VgsError(f"{cb_path}: norm_groups={c.norm_groups}; the official code only runs GroupNorm("
                       f"{OFFICIAL_GN_GROUPS}) codebooks")
    if tuple(g.grid) != c.grid or g.vocab_size != c.n_embed:
        raise VgsError(f"{cb_path} ({c.n_embed} codes, grid {c.grid}) is not this transformer's codebook")
    out = Path(out_dir)
    payload = {"epoch": 0, "global_step": int(t_ckpt.get("extra", {}).get("step", 0) or 0),
               "pytorch-lightning_version": LIGHTNING_VERSION, "callbacks": {}, "optimizer_states": [],
               "lr_schedulers": [], "state_dict": official_state(t_ckpt["state_dict"], cb_ckpt["state_dict"], g)}
    with atomic_path(out / "checkpoints" / "last.ckpt") as tmp:
        torch.save(payload, tmp)
    ds = dataset or ("vas" if c.n_embed == 128 else "vggsound")
    extra = t_ckpt.get("extra", {})
    extractor = tcfg.extractor or str(extra.get("extractor") or "")
    config = project_yaml(g, c, extractor, ds)
    # ours, ignored by the official code: lets `vgs import` restore what generation needs
    config["vgs"] = {"extractor": extractor, "extractor_settings": dict(extra.get("extractor_settings") or {}),
                     "classes": list(extra.get("classes") or []), "source": str(Path(transformer).resolve())}
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    with atomic_path(out / "configs" / f"{stamp}-project.yaml") as tmp:
        tmp.write_text(f"# exported by vgs from {Path(transformer).name}\n" + yaml.safe_dump(config, sort_keys=False))
    return out
