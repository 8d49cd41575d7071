"""`vgs import specvqgan`: official-format files (built from the manifests, wrapped as the published ones)
become vgs checkpoints tensor for tensor, refuse code-running pickles, and work in generate / eval / LPAPS."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
from _cli import run_vgs
from _official_fixtures import (
    SMALL_VQGAN,
    codebook_layout,
    melception_layout,
    melgan_layout,
    random_state,
    save_classifier,
    save_lightning,
    save_melgan,
    small_gpt,
    transformer_layout,
    transformer_project,
    vggishish_layout,
    write_run,
    write_stats,
)
from conftest import REFERENCE

from vgs_cli.checkpoint import load_checkpoint, save_checkpoint
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import load_model
from vgs_cli.official.importer import ImportOptions, import_specvqgan
from vgs_cli.official.safe_load import UnsafeFileError, load_official


@pytest.fixture(scope="module")
def ref() -> Path | None:
    """Manifest layouts when ../shared/reference is present, else the synthetic (our models') layouts."""
    return REFERENCE if (REFERENCE / "checkpoint_keys").is_dir() else None


def _assert_carried(ckpt_state: dict, official: dict, prefix: str = "", rename=lambda k: k) -> None:
    for key, value in official.items():
        if not key.startswith(prefix):
            continue
        ours = ckpt_state[rename(key[len(prefix):])]
        assert ours.dtype == value.dtype and torch.equal(ours, value), key


# ------------------------------------------------------------------------------------------- safety

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "callbacks": {"x": _RunsCode(marker)}}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        load_official(path)
    with pytest.raises(UnsafeFileError):
        import_specvqgan(path, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_cli_refusal_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from vgs_cli.cli.app import main

    marker = tmp_path / "PWNED"
    torch.save({"x": _RunsCode(marker)}, tmp_path / "evil.pt")
    monkeypatch.setattr(sys, "argv", ["vgs", "import", "specvqgan", str(tmp_path / "evil.pt"), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        main()  # the `vgs` entry point, in-process
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "system" in lines[0]
    assert not marker.exists()


def test_safe_load_admits_lightning_keys_and_numpy1_scalars(tmp_path, ref):
    ckpt = load_official(save_lightning(tmp_path / "a.ckpt", {"w": torch.ones(3)}, early_stopping=True))
    names = sorted(c.__doc__ for c in ckpt["callbacks"])  # placeholders, never the real classes
    assert names == ["stand-in for pytorch_lightning.callbacks.early_stopping.EarlyStopping",
                     "stand-in for pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    path = save_classifier(tmp_path / "c.pt", {"fc.weight": torch.ones(2, 2)})
    assert b"numpy.core.multiarray\nscalar" in _pickle_bytes(path)  # written as numpy 1.x did
    pt = load_official(path)
    assert float(pt["metrics"]["accuracy"]) == pytest.approx(0.51) and torch.equal(pt["model"]["fc.weight"],
                                                                                     torch.ones(2, 2))


def _pickle_bytes(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))


# ------------------------------------------------------------------------------------------ codebook

def test_codebook_import_is_bit_exact_and_decodes(tmp_path, ref):
    official = random_state(codebook_layout(ref), seed=1)
    run = write_run(tmp_path, "2021-06-06T19-42-53_vas_codebook", official, None, early_stopping=False)
    (written,) = import_specvqgan(run, tmp_path / "out")
    assert written.stage == "codebook" and written.path.name == "codebook.ckpt"
    assert any("kept 55 loss.*" in n for n in written.notes)  # LPAPS (33) + PatchGAN (22), apart from the model
    ckpt = load_checkpoint(written.path, stage="codebook")
    assert not any(k.startswith("loss.") for k in ckpt["state_dict"])
    _assert_carried(ckpt["state_dict"], {k: v for k, v in official.items() if not k.startswith("loss.")})
    assert ckpt["extra"]["official"]["run"] == "2021-06-06T19-42-53_vas_codebook"  # a listed run: paper numbers too
    assert ckpt["extra"]["official"]["paper_fid"] == 6.0
    model, cfg, _ = load_model(written.path, "codebook")
    assert cfg.model.ch == SMALL_VQGAN.ch and cfg.model.grid == (5, 53)
    with torch.no_grad():  # a forward pass of the imported model: 80x848 mel -> 5x53 codes -> 80x848 mel
        xrec, _, info = model(torch.rand(1, 1, 80, 848) * 2 - 1)
    assert xrec.shape == (1, 1, 80, 848) and info["indices"].shape == (1, 5, 53) and torch.isfinite(xrec).all()


@pytest.mark.slow
def test_full_size_codebook_from_the_manifest(tmp_path, reference_dir):
    official = random_state(codebook_layout(reference_dir, full=True), seed=2)
    path = save_lightning(tmp_path / "epoch_259.ckpt", official)
    (written,) = import_specvqgan(path, tmp_path / "out")
    ckpt = load_checkpoint(written.path, stage="codebook")
    kept = {k: v for k, v in official.items() if not k.startswith("loss.")}
    assert sum(v.numel() for v in ckpt["state_dict"].values()) == 71_907_713
    _assert_carried(ckpt["state_dict"], kept)


# --------------------------------------------------------------------------------------- transformer

def _transformer_run(tmp_path, ref, cfg, *, project=True, extractor="resnet50", name="run", seed=3):
    official = random_state(transformer_layout(ref, cfg), seed=seed)
    proj = transformer_project(cfg, extractor=extractor) if project else None
    return write_run(tmp_path / "src", name, official, proj), official


def test_transformer_import_writes_both_models_bit_exact(tmp_path, ref):
    cfg = small_gpt("feats", 212)
    run, official = _transformer_run(tmp_path, ref, cfg)
    written = import_specvqgan(run, tmp_path / "out")
    assert [(w.stage, w.path.name) for w in written] == [("codebook", "codebook.ckpt"),
                                                         ("transformer", "transformer.ckpt")]
    t_ckpt = load_checkpoint(tmp_path / "out" / "transformer.ckpt", stage="transformer")
    cb_ckpt = load_checkpoint(tmp_path / "out" / "codebook.ckpt", stage="codebook")
    assert not any("attn.mask" in k for k in t_ckpt["state_dict"])
    _assert_carried(t_ckpt["state_dict"], {k: v for k, v in official.items() if "attn.mask" not in k}, "transformer.")
    _assert_carried(cb_ckpt["state_dict"], official, "first_stage_model.")
    n_official = sum(1 for k in official if not k.endswith(("attn.mask", "shuffle_idx")))
    assert len(t_ckpt["state_dict"]) + len(cb_ckpt["state_dict"]) == n_official  # nothing extra, nothing lost
    extra = t_ckpt["extra"]
    assert (extra["condition"], extra["feat_frames"], extra["extractor"]) == ("feats", 212, "resnet50")
    assert extra["extractor_settings"]["image_size"] == 224 and "weights_sha256" not in extra["extractor_settings"]
    assert extra["extractor_settings"]["frame_path"] == "reference"  # generate reads frames as the reference did
    assert extra["codebook_sha256"] == file_sha256(tmp_path / "out" / "codebook.ckpt")
    gpt, tcfg, _ = load_model(tmp_path / "out" / "transformer.ckpt", "transformer")
    assert (tcfg.model.n_layer, tcfg.model.n_head, tcfg.model.n_embd, tcfg.model.block_size) == (2, 4, 64, 477)
    with torch.no_grad():  # forward pass: 212 feature frames + 264 codes -> logits for all 265 codes
        logits = gpt(torch.randint(0, 128, (2, 264)), torch.randn(2, 212, 2048))
    assert logits.shape == (2, 265, 128) and torch.isfinite(logits).all()


@pytest.mark.parametrize("condition,frames,extractor,project", [
    ("class", 1, "", True), ("feats+class", 212, "bninception", True), ("none", 1, "", True),
    ("feats", 5, "resnet50", False),
])
def test_transformer_conditions_are_inferred(tmp_path, ref, condition, frames, extractor, project):
    cfg = small_gpt(condition, frames)
    run, _ = _transformer_run(tmp_path, ref, cfg, project=project, extractor=extractor)
    written = import_specvqgan(run, tmp_path / "out", ImportOptions(n_head=None if project else 4))
    ckpt = load_checkpoint(tmp_path / "out" / "transformer.ckpt", stage="transformer")
    m = load_model(tmp_path / "out" / "transformer.ckpt", "transformer")[1].model
    assert (m.condition, m.block_size) == (condition, cfg.block_size)
    assert ckpt["extra"]["feat_frames"] == (frames if cfg.uses_feats else 0)
    if condition in ("class", "feats+class"):
        assert ckpt["extra"]["classes"][0] == "baby" and len(ckpt["extra"]["classes"]) == 8  # VAS, sorted
    if not project:  # no yaml: the head count comes from --n-head and the features cannot be told
        assert m.n_head == 4 and ckpt["extra"]["extractor"] == ""
        assert any("--extractor" in n for n in written[1].notes)
        assert "4 attention heads (--n-head)" in written[1].notes
    else:
        assert ckpt["extra"]["extractor"] == extractor
        assert "4 attention heads (GPT_config.n_head in 2021-07-29T13-34-39-project.yaml)" in written[1].notes
        assert ckpt["extra"]["official"]["n_head_from"].endswith("-project.yaml")


_cli = run_vgs  # in-process `vgs ARGS` -> exit code


def test_bare_transformer_head_count_must_be_given_and_decides_the_logits(tmp_path, ref, monkeypatch, capsys):
    """No tensor shows the head count: a bare 4-head file of width 64 (not the paper's 1024) stops with one
    line naming --n-head; with --n-head 4 its logits equal the source model's, with 16 they do not."""
    from vgs_cli.models.gpt import GPT

    cfg = small_gpt("feats", 212)
    official = random_state(transformer_layout(ref, cfg), seed=5)
    for key in official:  # sharper attention (random weights attend almost uniformly: any head count fits)
        if key.endswith(("attn.key.weight", "attn.query.weight", "attn.value.weight", "attn.proj.weight")):
            official[key] = official[key] * 10
    run = write_run(tmp_path / "src", "run", official, None)
    code = _cli(monkeypatch, "import", "specvqgan", str(run), "-o", str(tmp_path / "bare"))
    err = capsys.readouterr().err.strip().splitlines()  # one line, exit 2, no traceback, nothing written
    assert code == 2 and len(err) == 1 and not (tmp_path / "bare").exists()
    assert re.match(r"error: .*width 64 is not the paper's 1024 \(16 heads\); pass --n-head N", err[0]), err

    gpt_state = {k[len("transformer."):]: v for k, v in official.items()
                 if k.startswith("transformer.") and "attn.mask" not in k}
    source, wrong = GPT(cfg).eval(), GPT(cfg.replace(n_head=16)).eval()  # the file's model; the old guess
    source.load_state_dict(gpt_state)
    wrong.load_state_dict(gpt_state)
    assert _cli(monkeypatch, "import", "specvqgan", str(run), "-o", str(tmp_path / "out"), "--n-head", "4") == 0
    assert "4 attention heads (--n-head)" in capsys.readouterr().out
    imported = load_model(tmp_path / "out" / "transformer.ckpt", "transformer")[0]
    gen = torch.Generator().manual_seed(0)
    codes, feats = torch.randint(0, 128, (2, 264), generator=gen), torch.randn(2, 212, 2048, generator=gen)
    with torch.no_grad():
        want = source(codes, feats)
        diffs = {4: (imported(codes, feats) - want).abs().max().item(),
                 16: (wrong(codes, feats) - want).abs().max().item()}
    assert diffs[4] < 1e-5 and diffs[16] > 1e-3, diffs


def test_transformer_mismatches_fail_naming_the_problem(tmp_path, ref):
    cfg = small_gpt("feats", 212)
    layout = transformer_layout(ref, cfg)
    cases = {
        "attn.mask": lambda s: s["transformer.blocks.1.attn.mask"].fill_(1.0),
        "forward_shuffle_idx": lambda s: s.__setitem__("first_stage_permuter.forward_shuffle_idx",
                                                       torch.arange(265)),
        "cond_stage_model.extra": lambda s: s.__setitem__("cond_stage_model.extra", torch.ones(1)),
        "ln_f.bias": lambda s: s.pop("transformer.ln_f.bias"),
        "head.weight": lambda s: s.__setitem__("transformer.head.weight", torch.zeros(128, 65)),
    }
    for i, (needle, spoil) in enumerate(cases.items()):
        state = random_state(layout, seed=4)
        spoil(state)
        run = write_run(tmp_path / f"src{i}", "run", state, transformer_project(cfg))
        with pytest.raises(CheckpointError, match=needle.replace(".", r"\.")):
            import_specvqgan(run, tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists()  # checked before anything is written
    bad = transformer_project(cfg)
    bad["model"]["params"]["transformer_config"]["params"]["GPT_config"]["block_size"] = 478
    run = write_run(tmp_path / "src_yaml", "run", random_state(layout, seed=4), bad)
    with pytest.raises(CheckpointError, match="block_size.*477.*478"):
        import_specvqgan(run, tmp_path / "out_yaml")


# ----------------------------------------------------------------------------------- MelGAN, classifiers

def test_melgan_full_size_keeps_g_and_v_and_vocodes(tmp_path, ref):
    from vgs_cli.models.melgan import fold_weight_norm

    official = random_state(melgan_layout(ref), seed=5)
    path = save_melgan(tmp_path / "vocoder", official)
    (written,) = import_specvqgan(path, tmp_path / "out")
    ckpt = load_checkpoint(written.path, stage="vocoder")
    rename = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    _assert_carried(ckpt["state_dict"], official,
                    rename=lambda k: k.rsplit(".", 1)[0] + "." + rename.get(k.rsplit(".", 1)[1], k.rsplit(".", 1)[1]))
    gen, cfg, _ = load_model(written.path, "vocoder")
    assert sum(v.numel() for v in official.values()) == 4_266_050
    g, v = official["model.3.weight_g"], official["model.3.weight_v"]  # a ConvTranspose1d: g is [in, 1, 1]
    effective = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1)
    assert torch.allclose(fold_weight_norm(gen).model[3].weight, effective, atol=1e-6)
    with torch.no_grad():
        wav = gen(torch.rand(1, 80, 10))
    assert wav.shape == (1, 1, 2560) and cfg.model.ratios == (8, 8, 2, 2)


def test_melgan_args_must_agree(tmp_path, ref):
    official = random_state(melgan_layout(ref), seed=5)
    path = save_melgan(tmp_path / "vocoder", official, ngf=64)
    with pytest.raises(CheckpointError, match="ngf.*32.*64"):
        import_specvqgan(path, tmp_path / "out")


def test_classifiers_import_with_statistics_and_score(tmp_path, ref):
    from vgs_cli.metrics.evaluate import load_classifier
    from vgs_cli.metrics.features import classifier_outputs
    from vgs_cli.train.codebook import load_lpaps

    mel_state = random_state(melception_layout(ref), seed=6)
    vgg_state = random_state(vggishish_layout(ref), seed=7)
    src = tmp_path / "src"
    save_classifier(src / "melception-21-05-10T09-28-40.pt", mel_state)
    save_classifier(src / "vggishish16.pt", vgg_state)
    with pytest.raises(VgsError, match="train_means_stds_melspec_10s_22050hz.txt"):
        import_specvqgan(src, tmp_path / "out")
    stats = write_stats(src / "train_means_stds_melspec_10s_22050hz.txt")
    written = import_specvqgan(src, tmp_path / "out")
    assert sorted(w.path.name for w in written) == ["melception.ckpt", "vggishish.ckpt"]
    means = [float(line.split()[0]) for line in stats.read_text().splitlines()]
    mel_ckpt = load_checkpoint(tmp_path / "out" / "melception.ckpt", stage="melception")
    _assert_carried(mel_ckpt["state_dict"], mel_state)
    assert mel_ckpt["config"]["model"]["norm_mean"] == pytest.approx(means)
    assert mel_ckpt["config"]["model"]["num_classes"] == 309
    vgg_ckpt = load_checkpoint(tmp_path / "out" / "vggishish.ckpt", stage="vggishish")
    _assert_carried(vgg_ckpt["state_dict"], vgg_state)
    shift = vgg_ckpt["state_dict"]["scaling_layer.shift"].flatten()
    assert torch.allclose(shift, 2 * torch.tensor(means) - 1, atol=1e-6)
    model, _ = load_classifier(tmp_path / "out" / "melception.ckpt", torch.device("cpu"))  # what vgs eval does
    out = classifier_outputs(model, torch.rand(2, 80, 848))
    assert out["features"].shape == (2, model.feature_dim) and out["logits"].shape == (2, 309)
    lpaps = load_lpaps(tmp_path / "out" / "vggishish.ckpt")  # what `vgs train codebook --lpaps` does
    x = torch.rand(1, 1, 80, 848) * 2 - 1
    with torch.no_grad():
        assert float(lpaps(x, x).sum()) == pytest.approx(0.0, abs=1e-6) and float(lpaps(x, -x).sum()) > 0


# -------------------------------------------------------------------------------- export, generation

def _vgs_models(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny transformer + codebook as vgs checkpoints (fixed seeds), the transformer recording its codebook."""
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.vqgan import VQGAN

    torch.manual_seed(0)
    cb_path = save_checkpoint(tmp_path / "cb.ckpt", stage="codebook", config=CB["vas"].replace(model=SMALL_VQGAN)
                              .to_dict(), state_dict=VQGAN(SMALL_VQGAN).state_dict())
    gcfg = small_gpt("feats", 212)
    gpt = GPT(gcfg)
    with torch.no_grad():  # minGPT starts pos_emb at zero; give positions a say so the test can fail
        gpt.pos_emb.normal_(0, 0.5)
    settings = {"dim": 1280, "image_size": 64, "weights_sha256": "ab" * 32}
    extra = {"condition": "feats", "feat_frames": 212, "extractor": "efficientnet_lite0",
             "extractor_settings": settings, "classes": ["a", "b"], "codebook_path": str(cb_path),
             "codebook_sha256": file_sha256(cb_path)}
    t_path = save_checkpoint(tmp_path / "gpt.ckpt", stage="transformer", extra=extra, state_dict=gpt.state_dict(),
                             config=TR["vas"].replace(model=gcfg, extractor="efficientnet_lite0").to_dict())
    return t_path, cb_path


def test_export_then_import_generates_the_same_codes(tmp_path, ref):
    from vgs_cli.models import sampling
    from vgs_cli.official.export import export_specvqgan

    t_path, _ = _vgs_models(tmp_path)
    run = export_specvqgan(t_path, tmp_path / "2024-01-01T00-00-00_vas_transformer")
    exported = load_official(run / "checkpoints" / "last.ckpt")
    layout = transformer_layout(ref, small_gpt("feats", 212))
    if ref is not None:  # the manifest's names in the manifest's order
        assert list(exported["state_dict"]) == list(layout)
    assert {k: tuple(v.shape) for k, v in exported["state_dict"].items()} == {k: s for k, (s, _) in layout.items()}
    import_specvqgan(run, tmp_path / "out")
    original, _, t_ckpt = load_model(t_path, "transformer")
    imported, _, i_ckpt = load_model(tmp_path / "out" / "transformer.ckpt", "transformer")
    for key in ("extractor", "extractor_settings", "classes", "condition", "feat_frames"):
        assert i_ckpt["extra"][key] == t_ckpt["extra"][key], key
    feats = torch.randn(2, 212, 2048)
    codes = [sampling.sample(m, feats, num_samples=2, generator=torch.Generator().manual_seed(7), top_k=50)
             for m in (original, imported)]
    assert codes[0].shape == (4, 265) and torch.equal(codes[0], codes[1])
    assert not torch.equal(codes[0], sampling.sample(original, feats, num_samples=2, top_k=50,
                                                     generator=torch.Generator().manual_seed(8)))


def test_imported_folder_generates_and_names_a_missing_extractor(tmp_path, ref):
    from vgs_cli.generate.engine import (
        GenerateOptions,
        codes_to_audio,
        extractor_for,
        load_bundle,
        resolve_models,
        sample_codes,
    )

    cfg = small_gpt("feats", 5)
    run, _ = _transformer_run(tmp_path, ref, cfg, extractor="bninception")
    import_specvqgan(run, tmp_path / "out")
    import_specvqgan(save_melgan(tmp_path / "voc", random_state(melgan_layout(ref), seed=5)), tmp_path / "out")
    bundle = load_bundle(resolve_models(tmp_path / "out"), vocoder="melgan", device="cpu")
    codes = sample_codes(bundle, torch.randn(1, 230, 2048).numpy(), 3, GenerateOptions(seed=0))
    mel, wav = codes_to_audio(bundle, codes, 3 * 16 * 256)
    assert codes.shape == (1, 5, 3) and mel.shape == (1, 80, 48) and wav.shape == (1, 3 * 16 * 256)
    with pytest.raises(VgsError, match="bninception"):  # BN-Inception RGB+flow: no extractor for videos here
        extractor_for(bundle)


def test_imported_resnet50_transformer_accepts_official_and_prepared_features(tmp_path, ref):
    """The recorded settings match both shard kinds: ingested official features and `vgs prepare` ones."""
    from vgs_cli.generate.batch import _check_shard_features
    from vgs_cli.generate.engine import load_bundle, resolve_models
    from vgs_cli.loading.extractors import extractor_settings
    from vgs_cli.prepare.sources.ingest import EXTRACTORS

    cfg = small_gpt("feats", 5)
    run, _ = _transformer_run(tmp_path, ref, cfg, extractor="resnet50")
    import_specvqgan(run, tmp_path / "out")
    bundle = load_bundle(resolve_models(tmp_path / "out", vocoder="griffinlim"), vocoder="griffinlim", device="cpu")
    weights = tmp_path / "resnet50-0676ba61.pth"
    torch.save({"w": torch.ones(1)}, weights)
    prepared, _ = extractor_settings("resnet50", weights=weights)  # what `vgs prepare --extractor resnet50` writes
    random, _ = extractor_settings("resnet50", random_weights=True)
    for settings in (EXTRACTORS["resnet50"][1], prepared):
        assert _check_shard_features(bundle, {"extractors": {"resnet50": settings}}) == "resnet50"
    for settings in (random, {**prepared, "image_size": 128}):
        with pytest.raises(VgsError, match="differ"):
            _check_shard_features(bundle, {"extractors": {"resnet50": settings}})
    # shards made before the reference's frame path existed record no frame_path: vgs's ffmpeg path
    older = {k: v for k, v in prepared.items() if k != "frame_path"}
    with pytest.raises(VgsError, match=r"'ffmpeg' way but the transformer's the 'reference' way\): prepare"):
        _check_shard_features(bundle, {"extractors": {"resnet50": older}})


def test_existing_outputs_are_kept_unless_forced(tmp_path, ref):
    cfg = small_gpt("feats", 212)
    run_a, _ = _transformer_run(tmp_path / "a", ref, cfg, seed=10)
    run_b, _ = _transformer_run(tmp_path / "b", ref, cfg, seed=11)
    out = tmp_path / "out"
    import_specvqgan(run_a, out)
    before = (out / "transformer.ckpt").read_bytes()
    assert [w.status for w in import_specvqgan(run_a, out)] == ["unchanged", "unchanged"]
    with pytest.raises(VgsError, match="--force"):
        import_specvqgan(run_b, out)
    assert (out / "transformer.ckpt").read_bytes() == before
    import_specvqgan(run_b, out, ImportOptions(force=True))
    assert load_checkpoint(out / "transformer.ckpt")["extra"]["codebook_sha256"] == file_sha256(out / "codebook.ckpt")
