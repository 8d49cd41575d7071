"""Fine-tuning (issue 20): `--init` on every stage, LoRA adapters (wrapper, adapter file, merge, base check),
`--new-classes`, `--freeze`, the automatic validation split, early stopping, and the official codebook's
discriminator surviving import into `--init`.

Everything runs on toy shards written directly (no video decoding) and a built (not trained) codebook, so each
test takes seconds; the measured fine-tune vs scratch margin lives in test_finetune_margin.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_transformer_train import build_codebook
from vgs_cli.checkpoint import load_checkpoint, save_checkpoint
from vgs_cli.config.transformer import GPTConfig
from vgs_cli.data.dataset import auto_valid_split
from vgs_cli.data.shard_writer import write_clips
from vgs_cli.data.shards import ClipRecord
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.adapters import merge_lora_state
from vgs_cli.loading.models import load_model, load_state_strict
from vgs_cli.models.gpt import GPT
from vgs_cli.models.lora import LoRALinear, add_lora, merge_lora
from vgs_cli.train.init import init_config, read_init
from vgs_cli.train.runner import new_config, run, stage_module
from vgs_cli.train.trainer import Trainer

SR_SAMPLES = 220500


def _write_toy(root: Path, classes: list[str], n: int, seed: int, valid: bool = True) -> Path:
    """`n` clips, class k pulsing mel band k (feats: the class one-hot + noise, [215, 4]); a real-ish wav."""
    rng = np.random.default_rng(seed)
    t = np.arange(860)
    records = []
    for i in range(n):
        k = i % len(classes)
        mel = np.full((80, 860), 0.2, np.float32)
        mel[12 * k:12 * k + 12, (t // (8 * (k + 2))) % 2 == 0] = 0.8
        feats = np.zeros((215, 4), np.float32)
        feats[:, k % 4] = 1.0
        feats += 0.1 * rng.standard_normal(feats.shape).astype(np.float32)
        wav = (0.1 * rng.standard_normal(SR_SAMPLES)).astype(np.float32)
        split = "valid" if valid and i >= n - len(classes) else "train"
        records.append(ClipRecord(id=f"clip{i:03d}", split=split, mel=mel, feats={"toy": feats}, wav=wav, label=k))
    write_clips(root, records, classes=classes, extractors={"toy": {"dim": 4, "fps": 21.5}})
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft")
    data = _write_toy(root / "data", ["a", "b", "c", "d"], 24, seed=0)
    return {"root": root, "data": data, "codebook": build_codebook(data, root / "codebook.ckpt")}


def _opts(stage: str, toy: dict[str, Path]) -> dict:
    return {"codebook": toy["codebook"]} if stage == "transformer" else {}


def _source_checkpoint(stage: str, toy: dict[str, Path], path: Path) -> Path:
    """A checkpoint of `stage` as a run would write it, with weights unlike any fresh initialisation."""
    module = stage_module(stage)
    task = module.make_task(new_config(module, stage, "tiny", None, []), toy["data"], **_opts(stage, toy))
    torch.manual_seed(7)
    models = task.build_models()
    with torch.no_grad():
        for m in models.values():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    others = {n: m.state_dict() for n, m in models.items() if n != "model" and any(p.requires_grad for p in m.parameters())}
    return save_checkpoint(path, stage=stage, config=task.config.to_dict(), state_dict=models["model"].state_dict(),
                           train_state={"models": others})


def _first_forward(stage: str, model: torch.nn.Module, cfg) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    model = model.eval()
    with torch.no_grad():
        if stage == "codebook":
            return model(torch.rand(1, 1, 80, 96, generator=g) * 2 - 1)[0]
        if stage == "transformer":
            m = cfg.model
            idx = torch.randint(0, m.vocab_size, (2, 20), generator=g)
            return model(idx, torch.randn(2, m.feat_frames, m.feat_dim, generator=g), torch.tensor([0, 1]))
        if stage == "vocoder":
            return model(torch.rand(1, 80, 16, generator=g))
        if stage == "vggishish":
            return model(torch.rand(2, 1, 80, 848, generator=g) * 2 - 1)
        return model(torch.rand(2, 80, 848, generator=g))["logits"]


def _built(stage: str, toy: dict[str, Path], init_path: Path, run_dir: Path, overrides=(), **opts) -> Trainer:
    """A trainer for a new run `--init init_path`, models built (weights loaded) but not trained."""
    module = stage_module(stage)
    source = read_init(init_path, stage)
    task = module.make_task(init_config(module, stage, source, None, list(overrides)), toy["data"],
                            **{**_opts(stage, toy), **opts})
    task.init_record = source.record
    trainer = Trainer(task, run_dir, device="cpu", init=source)
    trainer._build()
    return trainer


@pytest.mark.parametrize("stage", ["codebook", "transformer", "vocoder", "melception", "vggishish"])
def test_init_loads_every_stage_exactly(stage, toy, tmp_path):
    path = _source_checkpoint(stage, toy, tmp_path / "source.ckpt")
    src, cfg, ckpt = load_model(path, stage)
    trainer = _built(stage, toy, path, tmp_path / "run")
    assert torch.equal(_first_forward(stage, trainer.bare["model"], cfg), _first_forward(stage, src, cfg))
    for name, state in ckpt["train_state"]["models"].items():  # the discriminators come along too
        own = trainer.bare[name].state_dict()
        assert all(torch.equal(own[k], v) for k, v in state.items()), name
    assert trainer.step == 0 and not any(o.state for o in trainer.optimizers.values())  # fresh optimisers


def test_init_run_records_its_source_and_a_shape_change_is_refused(toy, tmp_path):
    path = _source_checkpoint("transformer", toy, tmp_path / "base.ckpt")
    with pytest.raises(VgsError, match=r"weight 'pos_emb' \(model\) is \[1, 270, 64\] in the checkpoint but "
                                       r"\[1, 270, 32\] with this run's config; drop the override"):
        _built("transformer", toy, path, tmp_path / "bad", overrides=["model.n_embd=32"])
    res = run("transformer", data=toy["data"], preset=None, run_dir=tmp_path / "run", device="cpu", init=path,
              overrides=["train.steps=2", "train.eval_every=2"], **_opts("transformer", toy))
    assert res["step"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["init"] == {"path": str(path.resolve()), "sha256": file_sha256(path)}
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert best["extra"]["init"]["sha256"] == file_sha256(path) and best["config"]["model"]["n_embd"] == 64


def test_lora_wrapper_starts_as_the_base_and_merges_exactly():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=16, n_layer=2, n_head=2, n_embd=32, condition="class", num_classes=3, grid=(5, 4))
    gpt = GPT(cfg).eval()
    idx, cls = torch.randint(0, 16, (2, 19)), torch.tensor([0, 2])
    before = gpt(idx, None, cls)
    names = add_lora(gpt, rank=4, alpha=8.0)
    assert len(names) == 2 * 6 and all(isinstance(gpt.get_submodule(n), LoRALinear) for n in names)
    assert torch.equal(gpt(idx, None, cls), before)  # B starts at zero
    with torch.no_grad():
        for n in names:
            gpt.get_submodule(n).lora_B.normal_(0, 0.05)
    wrapped = gpt(idx, None, cls)
    assert (wrapped - before).abs().max() > 1e-3
    merged_state = merge_lora_state(gpt.state_dict(), 8.0 / 4)
    merged = merge_lora(gpt)
    assert torch.allclose(merged(idx, None, cls), wrapped, atol=1e-5)
    plain = GPT(cfg).eval()
    load_state_strict(plain, merged_state, "merged")
    assert torch.allclose(plain(idx, None, cls), wrapped, atol=1e-5)
    with pytest.raises(ValueError, match="no Linear layer matches"):
        add_lora(GPT(cfg), 2, 2.0, ("attn.qeury",))


@pytest.fixture(scope="module")
def lora_run(toy, tmp_path_factory) -> dict[str, Path]:
    """A base transformer (class + feats conditioned) and a LoRA rank-4 run on 6 new classes, merged."""
    root = tmp_path_factory.mktemp("lora")
    base_run = root / "base"
    run("transformer", data=toy["data"], preset="tiny", run_dir=base_run, device="cpu", codebook=toy["codebook"],
        condition="feats+class", feat_frames=5, overrides=["train.steps=6", "train.eval_every=6"])
    new = _write_toy(root / "new", ["e", "f", "g", "h", "i", "j"], 24, seed=1, valid=False)
    base = base_run / "checkpoints" / "best.ckpt"
    out = root / "lora"
    res = run("transformer", data=new, preset=None, run_dir=out, device="cpu", init=base, codebook=toy["codebook"],
              new_classes=True, overrides=["train.steps=4", "train.eval_every=2", "finetune.lora_rank=4",
                                           "finetune.lora_alpha=8"])
    from vgs_cli.train.finetune import write_merged

    merged = write_merged(out / "checkpoints" / "best.ckpt", out / "checkpoints" / "merged.ckpt")
    return {"base": base, "run": out, "merged": merged, "data": new, "result": res}


def test_lora_run_writes_a_small_adapter_that_records_its_base(lora_run):
    adapter = lora_run["run"] / "checkpoints" / "adapter.ckpt"
    ckpt = load_checkpoint(adapter, "transformer")
    info = ckpt["extra"]["adapter"]
    assert info["base_sha256"] == file_sha256(lora_run["base"]) and info["rank"] == 4 and info["alpha"] == 8.0
    keys = set(ckpt["state_dict"])
    # the LoRA pairs of the 6 default layers x 2 blocks, plus the new 6-row class table
    assert sum(k.endswith(".lora_A") for k in keys) == 12 and "cls_embedder.weight" in keys
    assert ckpt["state_dict"]["cls_embedder.weight"].shape[0] == 6 and len(keys) == 25
    extra = ckpt["extra"]
    assert extra["trainable_params"] < 0.2 * extra["total_params"]  # tiny GPT; the paper-size share is < 1%
    assert adapter.stat().st_size < 0.5 * lora_run["base"].stat().st_size


def test_adapter_plus_base_equals_merged_and_wrong_base_is_refused(lora_run, toy, tmp_path):
    adapter = lora_run["run"] / "checkpoints" / "adapter.ckpt"
    a_ckpt = load_checkpoint(adapter, "transformer")
    base, cfg_base, _ = load_model(lora_run["base"], "transformer")
    # unmerged: the base model, the new class table, LoRA wrappers holding the adapter's tensors
    m = GPT(cfg_base.model.replace(num_classes=6)).eval()
    state = {k: v for k, v in base.state_dict().items() if k != "cls_embedder.weight"}
    state["cls_embedder.weight"] = a_ckpt["state_dict"]["cls_embedder.weight"]
    m.load_state_dict(state)
    add_lora(m, 4, 8.0)
    m.load_state_dict({**m.state_dict(), **a_ckpt["state_dict"]})
    merged, cfg, _ = load_model(lora_run["merged"], "transformer")
    assert cfg.finetune.lora_rank == 0 and "adapter" not in load_checkpoint(lora_run["merged"])["extra"]
    via_adapter, _, _ = load_model(adapter, "transformer")
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, cfg.model.vocab_size, (2, 30), generator=g)
    feats, cls = torch.randn(2, 5, 4, generator=g), torch.tensor([1, 5])
    with torch.no_grad():
        ref = m(idx, feats, cls)
        assert (ref - base(idx, feats, torch.tensor([1, 1]))).abs().max() > 1e-4  # the adapter changed something
        assert torch.allclose(merged(idx, feats, cls), ref, atol=1e-5)
        assert torch.allclose(via_adapter(idx, feats, cls), ref, atol=1e-5)
    other = _source_checkpoint("transformer", toy, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="is not the base this adapter was trained on"):
        load_model(adapter, "transformer", base=other)
    moved = tmp_path / "gone" / "adapter.ckpt"
    ckpt = dict(a_ckpt)
    ckpt["extra"] = {**a_ckpt["extra"], "adapter": {**a_ckpt["extra"]["adapter"], "base_path": str(moved)}}
    save_checkpoint(tmp_path / "a.ckpt", stage="transformer", config=ckpt["config"], state_dict=ckpt["state_dict"],
                    extra=ckpt["extra"])
    with pytest.raises(CheckpointError, match="pass the base transformer checkpoint with --base"):
        load_model(tmp_path / "a.ckpt", "transformer")
    assert torch.allclose(load_model(tmp_path / "a.ckpt", "transformer", base=lora_run["base"])[0](idx, feats, cls),
                          ref, atol=1e-5)


def test_lora_run_validates_on_an_automatic_split_and_starts_new_classes_at_the_mean(lora_run):
    rows = [json.loads(line) for line in (lora_run["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "valid"] == [2, 4]  # the new data has no valid split
    train, valid = auto_valid_split([f"clip{i:03d}" for i in range(24)])
    assert len(valid) == 4 and not set(train) & set(valid) and len(train) + len(valid) == 24
    assert auto_valid_split(["a"] * 5) == ([0, 1, 2, 3, 4], [])


def test_new_classes_is_needed_for_another_class_count(lora_run, toy, tmp_path):
    with pytest.raises(VgsError, match=r"'cls_embedder.weight' .* or pass --new-classes"):
        run("transformer", data=lora_run["data"], preset=None, run_dir=tmp_path / "r", device="cpu",
            init=lora_run["base"], codebook=toy["codebook"], overrides=["train.steps=1"])
    with pytest.raises(VgsError, match="needs --init|pass --init"):
        run("transformer", data=toy["data"], preset="tiny", run_dir=tmp_path / "s", device="cpu",
            codebook=toy["codebook"], overrides=["train.steps=1", "finetune.lora_rank=2"])


def test_freeze_and_patience(toy, tmp_path):
    path = _source_checkpoint("transformer", toy, tmp_path / "base.ckpt")
    trainer = _built("transformer", toy, path, tmp_path / "f", overrides=['finetune.freeze=["blocks.0.*", "tok_emb.*"]'])
    frozen = {n for n, p in trainer.bare["model"].named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in trainer.bare["model"].named_parameters() if n.startswith(("blocks.0.", "tok_emb."))}
    in_optimizer = {id(p) for g in trainer.optimizers["gpt"].param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for n, p in trainer.bare["model"].named_parameters() if n in frozen)
    # lr 0: the valid loss never improves after the first validation, so patience 2 stops at step 4 of 20
    res = run("transformer", data=toy["data"], preset=None, run_dir=tmp_path / "p", device="cpu", init=path,
              codebook=toy["codebook"], overrides=["train.steps=20", "train.eval_every=1", "train.lr=0",
                                                   "train.patience=2"])
    assert res["step"] == 3


def test_official_codebook_import_keeps_the_loss_and_init_starts_with_its_discriminator(toy, tmp_path):
    from tests._official_fixtures import codebook_layout, random_state, write_run
    from vgs_cli.models.patchgan import PatchDiscriminator
    from vgs_cli.official.convert import with_prefix
    from vgs_cli.official.importer import import_specvqgan

    official = random_state(codebook_layout(None), seed=4)
    (written,) = import_specvqgan(write_run(tmp_path, "run_codebook", official, None), tmp_path / "out")
    ckpt = load_checkpoint(written.path, "codebook")
    disc_state = with_prefix(official, "loss.discriminator.")
    assert set(ckpt["aux_state"]) == {"disc", "lpaps"} and len(ckpt["aux_state"]["disc"]) == len(disc_state) == 22
    assert all(torch.equal(ckpt["aux_state"]["disc"][k], v) for k, v in disc_state.items())
    assert ckpt["aux_state"]["lpaps"].keys() == with_prefix(official, "loss.perceptual_loss.").keys()
    assert not any(k.startswith("loss.") for k in ckpt["state_dict"])
    assert ckpt["config"]["loss"]["disc_ndf"] == 8  # read from the tensors, not the preset's 64
    reference = PatchDiscriminator(1, 8, 3).eval()
    reference.load_state_dict(disc_state)
    trainer = _built("codebook", toy, written.path, tmp_path / "run")
    x = torch.rand(2, 1, 80, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(trainer.bare["disc"].eval()(x), reference(x))


def test_cli_lora_train_merge_and_generate_with_base(lora_run, toy, tmp_path, vgs):
    """`vgs train transformer --init --lora-rank --merge`, then `vgs generate --transformer ADAPTER --base`."""
    def run(*args: str) -> tuple[int, str]:
        proc = vgs(*args)
        return proc.returncode, proc.stdout + proc.stderr

    run_dir, cb = tmp_path / "run", str(toy["codebook"])
    code, out = run("train", "transformer", "--data", str(lora_run["data"]), "--init", str(lora_run["base"]),
                    "--codebook", cb, "-o", str(run_dir), "--steps", "2", "--set", "train.eval_every=2",
                    "--lora-rank", "2", "--new-classes", "--merge", "--device", "cpu")
    assert code == 0, out
    assert "fine-tuning" in out and "new class table" in out and "merged.ckpt" in out
    adapter = run_dir / "checkpoints" / "adapter.ckpt"
    common = ["--split", "train", "--limit", "1", "--codebook", cb, "--vocoder", "griffinlim", "--gl-iters", "2",
              "--device", "cpu"]
    code, out = run("generate", str(lora_run["data"]), "-o", str(tmp_path / "gen"), "--transformer", str(adapter),
                    "--base", str(lora_run["base"]), *common)
    assert code == 0, out
    assert len(list((tmp_path / "gen").rglob("*.wav"))) == 1
    other = _source_checkpoint("transformer", toy, tmp_path / "other.ckpt")
    code, out = run("generate", str(lora_run["data"]), "-o", str(tmp_path / "gen2"), "--transformer", str(adapter),
                    "--base", str(other), *common)
    assert code == 2 and "is not the base this adapter was trained on" in out and "Traceback" not in out
    code, out = run("export", "merged", str(adapter), "-o", str(tmp_path / "m.ckpt"), "--base", str(lora_run["base"]))
    assert code == 0, out
    a, b = load_checkpoint(tmp_path / "m.ckpt"), load_checkpoint(run_dir / "checkpoints" / "merged.ckpt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6) for k in a["state_dict"])


def test_export_merged_never_overwrites_its_base_and_needs_force_for_an_existing_file(lora_run, tmp_path, vgs):
    """Issue 25.5: `-o BASE` used to exit 0 and replace the base (the adapter then no longer loaded), and any
    existing output was replaced silently."""
    adapter, base = lora_run["run"] / "checkpoints" / "adapter.ckpt", lora_run["base"]
    kept = {p: file_sha256(p) for p in (adapter, base)}
    link = tmp_path / "link.ckpt"
    link.symlink_to(base)
    for src, out in [(adapter, base), (adapter, link), (adapter, adapter), (lora_run["run"], base)]:
        for force in ([], ["--force"]):
            proc = vgs("export", "merged", str(src), "-o", str(out), *force)
            assert proc.returncode == 2, (src, out, proc.stdout + proc.stderr)
            assert proc.stderr.count("\n") == 1 and "would destroy a file the adapter needs" in proc.stderr
    assert {p: file_sha256(p) for p in kept} == kept
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"mine")
    proc = vgs("export", "merged", str(adapter), "-o", str(other))
    assert proc.returncode == 2 and "already exists; use --force" in proc.stderr and other.read_bytes() == b"mine"
    assert vgs("export", "merged", str(adapter), "-o", str(other), "--force").returncode == 0
    assert load_model(other, "transformer")[1].finetune.lora_rank == 0


@pytest.mark.parametrize("option", [["--lora-rank", "0"], ["--lora-alpha", "0"], ["--lora-alpha", "-1"]])
def test_lora_rank_and_alpha_must_be_positive(option, lora_run, toy, tmp_path, vgs):
    """Issue 25: `--lora-rank 0` with --init was quietly a full fine-tune, `--lora-alpha 0` an adapter scaled by 0."""
    proc = vgs("train", "transformer", "--data", str(lora_run["data"]), "--init", str(lora_run["base"]),
               "--codebook", str(toy["codebook"]), "-o", str(tmp_path / "run"), "--steps", "1", "--new-classes",
               *(["--lora-rank", "2"] if option[0] != "--lora-rank" else []), *option, "--device", "cpu")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and option[0] in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()
