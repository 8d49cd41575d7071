"""Official-format SpecVQGAN files with random values, wrapped exactly as the published ones, for import tests.

Layouts (ordered `{key: (shape, dtype)}`) come from the manifests in ../shared/reference/checkpoint_keys when
present (key names and order from the manifest; `full=True` also takes its shapes) or, without the reference,
from our own models (the synthetic path: our models use the official names). Shape-scaled layouts keep every
manifest key and take the sizes of a small model of ours; for the transformer `n_layer` explicitly keeps only
blocks 0..n_layer-1 of the manifest's 24. Every scaled layout asserts that its key set equals the manifest's.

Wrappings (../shared/reference/checkpoint_keys/README.md):
- Lightning 1.2 `.ckpt`: {epoch, global_step, pytorch-lightning_version, callbacks keyed by Lightning classes
  (placeholder classes registered under the real dotted names while saving), optimizer_states, lr_schedulers,
  state_dict};
- classifiers: {model, optimizer, epoch, loss, metrics of numpy float64 pickled under numpy 1.x's name
  `numpy.core.multiarray.scalar`};
- MelGAN: bare state_dict with weight_g / weight_v, plus an argparse-dump `args.yml` with python tags.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vgs_cli.config.codebook import VQGANConfig
from vgs_cli.config.melception import MelceptionModelConfig
from vgs_cli.config.transformer import GPTConfig
from vgs_cli.config.vggishish import TINY_LAYERS, VGGishishModelConfig
from vgs_cli.config.vocoder import MelGANConfig

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]

SMALL_VQGAN = VQGANConfig(ch=32, z_channels=32, embed_dim=32, n_embed=128)  # GroupNorm(32) still divides
GPT_MANIFEST = {("feats", 212): "transformer_vas_feats212.json", ("feats", 5): "transformer_vas_feats5_gpt_only.json",
                ("none", 1): "transformer_vas_feats1_gpt_only.json", ("class", 1): "transformer_vas_class_gpt_only.json",
                ("feats+class", 212): "transformer_vas_featsclass_gpt_only.json"}


def small_gpt(condition: str = "feats", feat_frames: int = 212, n_layer: int = 2) -> GPTConfig:
    return GPTConfig(vocab_size=128, n_layer=n_layer, n_head=4, n_embd=64, condition=condition,
                     feat_frames=feat_frames, feat_dim=2048, num_classes=8)


def manifest(reference: Path | None, name: str) -> dict[str, Any] | None:
    if reference is None:
        return None
    return json.loads((reference / "checkpoint_keys" / name).read_text())


def _layout(state: dict[str, torch.Tensor], prefix: str = "") -> Layout:
    return {prefix + k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def _order(ours: Layout, man: dict[str, Any] | None, keep=lambda k: True, full: bool = False) -> Layout:
    """Our layout in the manifest's key order (asserting the same key set); `full` = manifest shapes."""
    if man is None:
        return ours
    keys = [k for k in man["keys"] if keep(k)]
    assert set(keys) == set(ours), f"manifest vs ours: {sorted(set(keys) ^ set(ours))[:6]}"
    if full:
        return {k: (tuple(man["keys"][k]), ours[k][1]) for k in keys}
    return {k: ours[k] for k in keys}


def codebook_layout(reference: Path | None, *, full: bool = False, loss: bool = True, prefix: str = "") -> Layout:
    """A codebook `.ckpt` state_dict layout (with the 55 `loss.*` keys unless `loss=False`)."""
    from vgs_cli.models.lpaps import LPAPS
    from vgs_cli.models.patchgan import PatchDiscriminator
    from vgs_cli.models.vqgan import VQGAN

    with torch.device("meta"):
        ours = _layout(VQGAN(VQGANConfig() if full else SMALL_VQGAN).state_dict())
        if loss:
            cfg = VGGishishModelConfig() if full else VGGishishModelConfig(conv_layers=TINY_LAYERS, hidden=64)
            ours.update(_layout(LPAPS(cfg).state_dict(), "loss.perceptual_loss."))
            ours.update(_layout(PatchDiscriminator(ndf=64 if full else 8).state_dict(), "loss.discriminator."))
    man = manifest(reference, "codebook_vas.json")
    layout = _order(ours, man, lambda k: loss or not k.startswith("loss."), full)
    return {prefix + k: v for k, v in layout.items()}


def transformer_layout(reference: Path | None, cfg: GPTConfig) -> Layout:
    """A transformer `.ckpt` layout: first_stage_model.* (small codebook), permuter, transformer.* with masks,
    blocks 0..cfg.n_layer-1 only."""
    from vgs_cli.models.gpt import GPT

    with torch.device("meta"):
        gpt = _layout(GPT(cfg).state_dict(), "transformer.")
    size = cfg.block_size
    gpt.update({f"transformer.blocks.{i}.attn.mask": ((1, 1, size, size), torch.float32) for i in range(cfg.n_layer)})
    ours = {**codebook_layout(reference, loss=False, prefix="first_stage_model."),
            "first_stage_permuter.forward_shuffle_idx": ((cfg.num_tokens,), torch.int64),
            "first_stage_permuter.backward_shuffle_idx": ((cfg.num_tokens,), torch.int64), **gpt}
    man = manifest(reference, GPT_MANIFEST[(cfg.condition, cfg.feat_frames if cfg.uses_feats else 1)])
    if man is None:
        return ours
    head = {k: ours[k] for k in ours if not k.startswith("transformer.")}

    def keep(key: str) -> bool:  # the explicit flag: blocks 0..n_layer-1 of the manifest's 24
        return not key.startswith("transformer.blocks.") or int(key.split(".")[2]) < cfg.n_layer

    return {**head, **_order(gpt, {"keys": {k: v for k, v in man["keys"].items() if k.startswith("transformer.")}},
                             keep)}


def melgan_layout(reference: Path | None) -> Layout:
    """Full-size MelGAN generator (`best_netG.pt`): weight_g / weight_v / bias per conv."""
    from vgs_cli.models.melgan import Generator, parametrized_to_official

    with torch.device("meta"):
        ours = _layout(parametrized_to_official(Generator(MelGANConfig()).state_dict()))
    return _order(ours, manifest(reference, "melgan_generator.json"), full=True)


def melception_layout(reference: Path | None, width: float = 0.125) -> Layout:
    from vgs_cli.models.melception import Melception

    with torch.device("meta"):
        ours = _layout(Melception(MelceptionModelConfig(num_classes=309, width=width)).state_dict())
    return _order(ours, manifest(reference, "melception.json"))


def vggishish_layout(reference: Path | None) -> Layout:
    from vgs_cli.models.vggishish import VGGishish

    with torch.device("meta"):
        state = VGGishish(VGGishishModelConfig(conv_layers=TINY_LAYERS, hidden=64)).state_dict()
    ours = _layout({k: v for k, v in state.items() if not k.startswith("scaling_layer.")})
    return _order(ours, manifest(reference, "vggishish.json"))


# ------------------------------------------------------------------------------------------- values

def random_state(layout: Layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of the right kind: causal masks, the time-major permuter, positive BN variances."""
    from vgs_cli.models.gpt import to_sequence

    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, (shape, dtype) in layout.items():
        if key.endswith("attn.mask"):
            out[key] = torch.ones(shape[-1], shape[-1]).tril_().view(shape)
        elif key.endswith("shuffle_idx"):
            fwd = to_sequence(torch.arange(shape[0]).view(1, 5, shape[0] // 5))[0]
            out[key] = fwd if "forward" in key else torch.argsort(fwd)
        elif dtype == torch.int64:
            out[key] = torch.randint(0, 1000, shape, generator=g)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


# ----------------------------------------------------------------------------------------- wrappings

@contextlib.contextmanager
def lightning_classes() -> Iterator[dict[str, type]]:
    """Placeholder Lightning callback classes, importable under their real dotted names while saving."""
    names = {"ModelCheckpoint": "pytorch_lightning.callbacks.model_checkpoint",
             "EarlyStopping": "pytorch_lightning.callbacks.early_stopping"}
    added, classes = [], {}
    for cls_name, module in names.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod not in sys.modules:
                sys.modules[mod] = types.ModuleType(mod)
                added.append(mod)
        cls = type(cls_name, (), {"__module__": module, "__qualname__": cls_name})
        setattr(sys.modules[module], cls_name, cls)
        classes[cls_name] = cls
    try:
        yield classes
    finally:
        for mod in reversed(added):
            del sys.modules[mod]


def save_lightning(path: Path, state: dict[str, torch.Tensor], *, early_stopping: bool = False) -> Path:
    """A PL 1.2 checkpoint: callbacks keyed by classes, Adam moments in optimizer_states."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    with lightning_classes() as cls:
        callbacks = {cls["ModelCheckpoint"]: {"monitor": "val/loss", "best_model_score": torch.tensor(1.5),
                                              "best_model_path": "/logs/checkpoints/epoch_9.ckpt"}}
        if early_stopping:
            callbacks[cls["EarlyStopping"]] = {"wait_count": 0, "stopped_epoch": 0, "best_score": torch.tensor(1.5),
                                               "patience": 2}
        ckpt = {"epoch": 9, "global_step": 1234, "pytorch-lightning_version": "1.2.10", "callbacks": callbacks,
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros_like(state[first]),
                                                    "exp_avg_sq": torch.zeros_like(state[first]), "step": 1234}},
                                      "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.95), "params": [0]}]}],
                "lr_schedulers": [], "state_dict": state}
        torch.save(ckpt, path)
    return path


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy scalars' reconstructor under numpy 1.x's module name, as the official classifiers have it."""

    def save_global(self, obj, name=None):
        from numpy._core.multiarray import scalar

        if obj is scalar:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def save_classifier(path: Path, model_state: dict[str, torch.Tensor]) -> Path:
    """{"model", "optimizer", "epoch", "loss", "metrics" (numpy float64)} as the official .pt files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": model_state, "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4, "params": [0, 1]}]},
            "epoch": 29, "loss": 1.25, "metrics": {"accuracy": np.float64(0.51), "mAP": np.float64(0.47)}}
    module = types.ModuleType("numpy1_pickle")  # torch.save only needs `.Pickler` (and a `__name__`)
    module.Pickler = _Numpy1Pickler
    torch.save(ckpt, path, pickle_module=module)
    return path


ARGS_YML = """!!python/object:argparse.Namespace
augment: true
batch_size: 64
data_path: !!python/object/apply:pathlib.PosixPath
- data
- vggsound
downsamp_factor: 4
lambda_feat: 10
load_path: null
n_layers_D: 4
n_mel_channels: {n_mels}
n_residual_layers: 3
ndf: 16
ngf: {ngf}
num_D: 3
save_path: !!python/object/apply:pathlib.PosixPath
- vocoder
- logs
- vggsound
seq_len: 8192
"""


def save_melgan(folder: Path, state: dict[str, torch.Tensor], *, args: bool = True, ngf: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_netG.pt")
    if args:
        (folder / "args.yml").write_text(ARGS_YML.format(n_mels=80, ngf=ngf))
    return folder / "best_netG.pt"


def write_stats(path: Path, n: int = 80) -> Path:
    rng = np.random.default_rng(0)
    rows = [f"{m:.8f} {s:.8f}" for m, s in zip(rng.uniform(0.3, 0.6, n), rng.uniform(0.05, 0.2, n), strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


def transformer_project(cfg: GPTConfig, vq: VQGANConfig = SMALL_VQGAN, extractor: str = "resnet50") -> dict:
    """The fields of an official `*-project.yaml` (as configs/vas_transformer.yaml, resolved)."""
    target = {"feats": "GPTFeats", "none": "GPTFeats", "class": "GPTClass", "feats+class": "GPTFeatsClass"}
    feats = {"resnet50": {"rgb_feats_dir_path": "./data/vas/features/*/feature_resnet50_dim2048_21.5fps"},
             "bninception": {"rgb_feats_dir_path": "./data/vas/features/*/feature_rgb_bninception_dim1024_21.5fps",
                             "flow_feats_dir_path": "./data/vas/features/*/feature_flow_bninception_dim1024_21.5fps"}}
    return {
        "model": {"base_learning_rate": 1e-6, "target": "specvqgan.models.cond_transformer.Net2NetTransformer",
                  "params": {
                      "cond_stage_key": "feature",
                      "transformer_config": {"target": f"specvqgan.modules.transformer.mingpt.{target[cfg.condition]}",
                                             "params": {"GPT_config": {"vocab_size": cfg.vocab_size,
                                                                       "block_size": cfg.block_size,
                                                                       "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                                                                       "n_embd": cfg.n_embd}}},
                      "first_stage_permuter_config": {"target": "specvqgan.modules.transformer.permuter.ColumnMajor",
                                                      "params": {"H": 5, "W": 53}},
                      "first_stage_config": {"target": "specvqgan.models.vqgan.VQModel", "params": {
                          "ckpt_path": "./logs/2021-06-06T19-42-53_vas_codebook/checkpoints/epoch_259.ckpt",
                          "embed_dim": vq.embed_dim, "n_embed": vq.n_embed,
                          "ddconfig": {"double_z": False, "z_channels": vq.z_channels, "resolution": 848,
                                       "in_channels": 1, "out_ch": 1, "ch": vq.ch, "ch_mult": list(vq.ch_mult),
                                       "num_res_blocks": vq.num_res_blocks, "attn_resolutions": [53], "dropout": 0.0},
                          "lossconfig": {"target": "specvqgan.modules.losses.DummyLoss"}}}}},
        "data": {"target": "train.ConditionedSpectrogramDataModuleFromConfig", "params": {
            "batch_size": 2, "spec_dir_path": "./data/vas/features/*/melspec_10s_22050hz", "feat_depth": 2048,
            "replace_feats_with_random": cfg.condition == "none", **feats.get(extractor, {}),
            "feat_sampler_cfg": {"target": "specvqgan.data.vas.ResampleFrames",
                                 "params": {"feat_sample_size": cfg.feat_frames if cfg.uses_feats else 1}}}},
    }


def write_run(root: Path, name: str, state: dict[str, torch.Tensor], project: dict | None, *,
              early_stopping: bool = True) -> Path:
    """An unpacked run folder: <root>/<name>/checkpoints/epoch_9.ckpt (+ configs/<time>-project.yaml)."""
    import yaml

    run = root / name
    save_lightning(run / "checkpoints" / "epoch_9.ckpt", state, early_stopping=early_stopping)
    if project is not None:
        (run / "configs").mkdir(parents=True, exist_ok=True)
        (run / "configs" / "2021-07-29T13-34-39-project.yaml").write_text(yaml.safe_dump(project))
        (run / "configs" / "2021-07-29T13-34-39-lightning.yaml").write_text("lightning: {}\n")
    return run
