"""Official codebook / GPT state_dicts -> vgs model configs, sizes read from the tensors themselves.

The names already match our models (models/vqgan.py, models/gpt.py use the official parameter names), so
"conversion" means: pick the right prefix, drop what inference does not need (the codebook's `loss.*`,
the GPT's `blocks.<i>.attn.mask` buffers after checking they are the plain causal mask), check the
permuter is the time-major order we implement, and infer every size from tensor shapes so that a file
whose shapes are not the paper's (or a shape-scaled test file) still maps exactly or fails naming keys.
A project YAML, when present, is cross-checked against the tensors, never trusted over them.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from vgs_cli.config.codebook import VQGANConfig
from vgs_cli.config.spec import SPEC
from vgs_cli.config.transformer import GPTConfig
from vgs_cli.errors import CheckpointError, ConfigError
from vgs_cli.models.gpt import to_sequence

State = dict[str, torch.Tensor]
LOSS_PREFIX = "loss."
OFFICIAL_GN_GROUPS = 32  # taming's Normalize(): GroupNorm(32) everywhere
OFFICIAL_N_HEAD = 16  # not visible in any tensor; the paper's GPT_config (for its width, 1024)
OFFICIAL_N_EMBD = 1024


def with_prefix(state: State, prefix: str) -> State:
    """The entries under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _need(state: State, key: str, where: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{where}: missing tensor {key!r}; not an official SpecVQGAN file of this kind")
    return state[key]


def disagree(where: str, what: str, file_value: Any, config_value: Any) -> CheckpointError:
    return CheckpointError(f"{where}: the weights and their config disagree on {what} "
                           f"(tensors: {file_value}, config: {config_value})")


# ------------------------------------------------------------------------------------------- codebook

def split_codebook(state: State) -> tuple[State, list[str]]:
    """(inference weights, dropped `loss.*` keys). The loss carries the LPAPS net (random weights in the
    released files: the reference never loaded trained ones, issue #13) and the PatchGAN."""
    kept = {k: v for k, v in state.items() if not k.startswith(LOSS_PREFIX)}
    return kept, sorted(k for k in state if k.startswith(LOSS_PREFIX))


def _levels(state: State, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def infer_vqgan_config(state: State, ddconfig: dict[str, Any] | None = None, *, where: str) -> VQGANConfig:
    """The VQGANConfig whose model has exactly these tensors (taming layout); `ddconfig` is checked."""
    conv_in = _need(state, "encoder.conv_in.weight", where)
    n_embed, embed_dim = _need(state, "quantize.embedding.weight", where).shape
    ch = int(conv_in.shape[0])
    levels = _levels(state, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"{where}: encoder levels {levels} are not 0..n-1")
    widths = [int(_need(state, f"encoder.down.{i}.block.0.conv1.weight", where).shape[0]) for i in levels]
    if any(w % ch for w in widths):
        raise CheckpointError(f"{where}: level widths {widths} are not multiples of conv_in's {ch} channels")
    frames = int((ddconfig or {}).get("resolution", SPEC.model_frames))
    attn = [i for i in levels if f"encoder.down.{i}.attn.0.norm.weight" in state]
    kwargs = dict(
        ch=ch, ch_mult=tuple(w // ch for w in widths), frames=frames,
        num_res_blocks=len(_levels(state, r"encoder\.down\.0\.block\.(\d+)\.")),
        attn_resolutions=tuple(frames // 2**i for i in attn),
        z_channels=int(_need(state, "encoder.conv_out.weight", where).shape[0]),
        in_channels=int(conv_in.shape[1]),
        out_channels=int(_need(state, "decoder.conv_out.weight", where).shape[0]),
        n_embed=int(n_embed), embed_dim=int(embed_dim), norm_groups=OFFICIAL_GN_GROUPS, dropout=0.0,
    )
    if ddconfig:
        _check_ddconfig(kwargs, ddconfig, where)
    try:
        return VQGANConfig(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: the codebook's sizes do not form a valid model ({exc}); official "
                              f"codebooks use GroupNorm({OFFICIAL_GN_GROUPS}) on an 80x848 input") from None


def _check_ddconfig(kwargs: dict[str, Any], dd: dict[str, Any], where: str) -> None:
    pairs = {"ch": "ch", "ch_mult": "ch_mult", "num_res_blocks": "num_res_blocks", "z_channels": "z_channels",
             "in_channels": "in_channels", "out_ch": "out_channels", "attn_resolutions": "attn_resolutions",
             "n_embed": "n_embed", "embed_dim": "embed_dim"}
    for yaml_key, ours in pairs.items():
        if yaml_key not in dd:
            continue
        want = tuple(dd[yaml_key]) if isinstance(dd[yaml_key], (list, tuple)) else dd[yaml_key]
        if want != kwargs[ours]:
            raise disagree(where, yaml_key, kwargs[ours], want)
    if dd.get("double_z"):
        raise CheckpointError(f"{where}: double_z codebooks are not supported (the paper's are single-z)")


# ---------------------------------------------------------------------------------------- transformer

def drop_attn_masks(gpt: State, *, where: str) -> tuple[State, int]:
    """Remove `blocks.<i>.attn.mask` after checking each is the `[1, 1, S, S]` lower-triangular ones
    (S = pos_emb rows): our attention applies exactly that mask without storing it."""
    size = int(_need(gpt, "pos_emb", where).shape[1])
    want = torch.ones(size, size).tril_().view(1, 1, size, size)
    masks = [k for k in gpt if re.fullmatch(r"blocks\.\d+\.attn\.mask", k)]
    for key in masks:
        got = gpt[key]
        if tuple(got.shape) != tuple(want.shape) or not torch.equal(got.float(), want):
            raise CheckpointError(f"{where}: transformer.{key} {tuple(got.shape)} is not the causal mask over "
                                  f"the {size} positions; this GPT attends differently from ours")
    return {k: v for k, v in gpt.items() if k not in masks}, len(masks)


def check_permuter(forward: torch.Tensor, backward: torch.Tensor, grid: tuple[int, int], *, where: str) -> None:
    """The first-stage permuter must be the time-major ("ColumnMajor") order of `models.gpt.to_sequence`."""
    h, w = grid
    want = to_sequence(torch.arange(h * w).view(1, h, w))[0]
    if tuple(forward.shape) != (h * w,) or not torch.equal(forward.long(), want):
        raise CheckpointError(f"{where}: first_stage_permuter.forward_shuffle_idx is not the time-major order "
                              f"of a {h}x{w} grid; only that token order is supported")
    if not torch.equal(backward.long(), torch.argsort(want)):
        raise CheckpointError(f"{where}: first_stage_permuter.backward_shuffle_idx is not the inverse order")


def condition_layout(gpt: State, *, where: str) -> tuple[str, int, int]:
    """(condition kind by embedder keys, feature dim (0 if none), class rows (0 if none))."""
    if "feat_embedder.weight" in gpt or "cls_embedder.weight" in gpt:
        feat = _need(gpt, "feat_embedder.weight", where)
        return "feats+class", int(feat.shape[1]), int(_need(gpt, "cls_embedder.weight", where).shape[0])
    emb = _need(gpt, "embedder.weight", where)
    if emb.dim() == 2:  # nn.Embedding(num_classes, n_embd)
        return "class", 0, int(emb.shape[0])
    if emb.dim() == 3 and emb.shape[2] == 1:  # Conv1d(feat_dim, n_embd, 1)
        return "feats", int(emb.shape[1]), 0
    raise CheckpointError(f"{where}: transformer.embedder.weight {tuple(emb.shape)} is neither a class "
                          "embedding nor a kernel-1 feature projection")


def head_count(gpt: State, from_yaml: Any, from_option: int | None, *, yaml_name: str,
               where: str) -> tuple[int, str]:
    """(attention heads, where the number came from). No tensor shows the head count, and a wrong one loads
    without complaint (logits ~1e-3 off, tokens often the same), so: the run's project yaml, else `--n-head`,
    else the paper's 16 only for the paper's width 1024; any other width with neither is an error."""
    width = int(_need(gpt, "tok_emb.weight", where).shape[1])
    if from_yaml is not None:
        if from_option is not None and int(from_option) != int(from_yaml):
            raise CheckpointError(f"{where}: --n-head {from_option} disagrees with n_head {from_yaml} in "
                                  f"{yaml_name}; drop --n-head (the project yaml is the run's own record)")
        return int(from_yaml), f"GPT_config.n_head in {yaml_name}"
    if from_option is not None:
        return int(from_option), "--n-head"
    if width == OFFICIAL_N_EMBD:
        return OFFICIAL_N_HEAD, f"the paper's value for width {OFFICIAL_N_EMBD} (no project yaml)"
    raise CheckpointError(f"{where}: no project yaml gives the transformer's head count and its width {width} is "
                          f"not the paper's {OFFICIAL_N_EMBD} (16 heads); pass --n-head N (its GPT_config.n_head)")


def infer_gpt_config(gpt: State, grid: tuple[int, int], *, n_head: int = OFFICIAL_N_HEAD, no_feats: bool = False,
                     where: str) -> GPTConfig:
    """The GPTConfig whose model has these tensors (masks already dropped) for a codebook `grid`.

    `no_feats` marks the paper's "No Feats" runs (random features through a 1-frame feature embedder)."""
    vocab, n_embd = _need(gpt, "tok_emb.weight", where).shape
    block = int(_need(gpt, "pos_emb", where).shape[1])
    layers = _levels(gpt, r"blocks\.(\d+)\.")
    if not layers or layers != list(range(len(layers))):
        raise CheckpointError(f"{where}: transformer blocks {layers[:5]}... are not numbered 0..n-1")
    kind, feat_dim, classes = condition_layout(gpt, where=where)
    tokens = grid[0] * grid[1]
    cond = block - tokens
    frames = {"feats": cond, "feats+class": cond - 1}.get(kind, 1)
    if no_feats:
        if kind != "feats" or cond != 1:
            raise CheckpointError(f"{where}: a 'No Feats' run must have a 1-frame feature embedder "
                                  f"(found {kind} with {cond} condition positions)")
        kind = "none"
    if cond < 1 or frames < 1:
        raise CheckpointError(f"{where}: pos_emb has {block} rows, fewer than the {tokens} codes + condition")
    kwargs: dict[str, Any] = dict(vocab_size=int(vocab), n_layer=len(layers), n_head=int(n_head), n_embd=int(n_embd),
                                  dropout=0.0, condition=kind, feat_frames=frames, grid=tuple(grid))
    if feat_dim:
        kwargs["feat_dim"] = feat_dim
    if classes:
        kwargs["num_classes"] = classes
    try:
        cfg = GPTConfig(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: the transformer's sizes do not form a valid model ({exc})") from None
    if cfg.block_size != block:
        raise CheckpointError(f"{where}: pos_emb has {block} rows but a {kind} model over {tokens} codes needs "
                              f"{cfg.block_size}")
    return cfg


# --------------------------------------------------------------------------------------------- result

class Converted:
    """One vgs checkpoint to write: stage, stage config (dict), weights, provenance, notes for the user."""

    def __init__(self, stage: str, config: dict[str, Any], state_dict: State, extra: dict[str, Any],
                 notes: list[str] | None = None, aux_state: dict[str, State] | None = None) -> None:
        self.stage, self.config, self.state_dict, self.extra = stage, config, state_dict, extra
        self.notes = list(notes or [])
        self.aux_state = dict(aux_state or {})  # training-only models kept with the weights (checkpoint.py)
