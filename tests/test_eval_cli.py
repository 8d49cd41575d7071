"""`vgs eval` end to end: shards + a folder of wavs or mels -> FID/KID/ISc/MKL table and JSON; the real-side
cache; pairing by clip id (sub-folders, `_sample_<k>`, reconstructions named `<clip_id>.npy`); one-line
errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import run_vgs

from vgs_cli.audio.io import write_wav
from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.melception import PRESETS, MelceptionConfig
from vgs_cli.config.vggishish import TINY_LAYERS, VGGishishConfig, VGGishishModelConfig
from vgs_cli.data.shards import iter_clips
from vgs_cli.fsutil import file_sha256
from vgs_cli.models.melception import Melception
from vgs_cli.models.vggishish import VGGishish
from vgs_cli.train.classify import mel_stats


def vgs(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = run_vgs(monkeypatch, *map(str, args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def shards(tiny_shards, tmp_path_factory) -> Path:
    """A private copy of tiny_shards (the evaluation writes its cache into `<shards>/.cache`)."""
    root = tmp_path_factory.mktemp("eval") / "shards"
    root.mkdir()
    for p in tiny_shards.iterdir():
        if p.is_file():
            shutil.copy2(p, root / p.name)
    return root


@pytest.fixture(scope="module")
def classifier(shards, tmp_path_factory) -> Path:
    """A tiny Melception with random weights but real input and BatchNorm statistics (one train-mode pass
    over all clips), saved as a vgs checkpoint: untrained, yet its features and class distributions differ
    from clip to clip (with the initial BN statistics every clip would map to ~zero features)."""
    torch.manual_seed(0)
    mean, std = mel_stats(shards)
    model_cfg = PRESETS["tiny"].model.replace(num_classes=6, norm_mean=tuple(mean), norm_std=tuple(std),
                                              bn_momentum=None)
    model = Melception(model_cfg).train()
    mels = torch.stack([torch.from_numpy(c["mel"][:, 6:854]) for c in iter_clips(shards, fields=("mel",))])
    with torch.no_grad():
        model(mels)
        model.fc.weight.mul_(10.0)  # sharper class distributions, so MKL separates similar from different
    path = tmp_path_factory.mktemp("clf") / "melception.ckpt"
    save_checkpoint(path, stage="melception", config=MelceptionConfig(model=model_cfg).to_dict(),
                    state_dict=model.state_dict())
    return path


def _clips(shards: Path, split: str) -> list[dict]:
    return list(iter_clips(shards, split, fields=("id", "wav", "mel")))


def _write_wavs(folder: Path, clips: list[dict], names: list[str]) -> Path:
    for clip, name in zip(clips, names, strict=True):
        write_wav(folder / f"{name}_sample_0.wav", clip["wav"])  # ids "class/clip" -> sub-folders
    return folder


def _eval(monkeypatch, capsys, shards, fake, classifier, out_json, *extra) -> dict:
    code, out, err = vgs(monkeypatch, capsys, "eval", "--real", f"{shards}:test", "--fake", fake,
                         "--classifier", classifier, "--json", out_json, "--isc-splits", "3",
                         "--kid-subsets", "10", "--batch-size", "4", *extra)
    assert code == 0, err
    assert "FID" in out and "MKL" in out
    return json.loads(Path(out_json).read_text())


def test_eval_real_wavs_as_fakes_scores_near_perfect(monkeypatch, capsys, shards, classifier, tmp_path):
    test_clips = _clips(shards, "test")
    ids = [c["id"] for c in test_clips]
    same = _eval(monkeypatch, capsys, shards, _write_wavs(tmp_path / "same", test_clips, ids), classifier,
                 tmp_path / "same.json")
    # other clips (the valid split) under the test clips' names: a genuinely different set
    other = _eval(monkeypatch, capsys, shards, _write_wavs(tmp_path / "other", _clips(shards, "valid"), ids),
                  classifier, tmp_path / "other.json")
    assert same["n_real"] == 6 and same["n_fake"] == 6 and same["split"] == "test"
    assert same["classifier_sha256"] == file_sha256(classifier)
    assert same["fake_kinds"] == {"mel": 0, "wav": 6}
    m, o = same["metrics"], other["metrics"]
    assert set(m) == {"fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "mkl", "mkl_pairs"}
    assert m["mkl_pairs"] == 6
    # the wav round trip (int16 storage, mel recomputed) is nearly lossless: measured FID 0.011 vs 1.85 for
    # the other clips and MKL 0.003 vs 0.32 with this classifier
    assert m["fid"] < 0.05 * o["fid"] and m["mkl"] < 0.05 * o["mkl"]
    assert abs(m["mkl"]) < 0.01 and o["mkl"] > 0.05
    assert 1.0 <= m["isc_mean"] <= 6.0
    assert (shards / ".cache").is_dir() and any((shards / ".cache").iterdir())
    assert other["real_cached"] is True  # the second evaluation reused the real features


@pytest.mark.slow  # > 10 s on 2 cores
def test_eval_npy_samples_and_reconstructions_pair_by_clip_id(monkeypatch, capsys, shards, classifier, tmp_path):
    clips = _clips(shards, "test")
    samples, recon = tmp_path / "samples", tmp_path / "recon"
    for c in clips:
        for k in range(2):  # two generated samples per clip, in `<class>/` sub-folders like `vgs generate`
            path = samples / f"{c['id']}_sample_{k}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, c["mel"])
        recon.mkdir(exist_ok=True)  # codec reconstructions: flat `<clip_id>.npy` with the base name only
        np.save(recon / f"{c['id'].rsplit('/', 1)[-1]}.npy", c["mel"][:, 6:854])  # already the 848 centre
    res = _eval(monkeypatch, capsys, shards, samples, classifier, tmp_path / "s.json", "--no-cache")
    assert res["n_fake"] == 12 and res["metrics"]["mkl_pairs"] == 12 and res["real_cached"] is False
    assert abs(res["metrics"]["mkl"]) < 1e-4  # identical spectrograms: only the reference's 1e-6 eps remains
    rec = _eval(monkeypatch, capsys, shards, recon, classifier, tmp_path / "r.json", "--metrics", "fid,mkl")
    assert set(rec["metrics"]) == {"fid", "mkl", "mkl_pairs"} and rec["metrics"]["mkl_pairs"] == 6
    assert abs(rec["metrics"]["fid"]) < 1e-3 and abs(rec["metrics"]["mkl"]) < 1e-4


def test_eval_with_a_vggishish_classifier(monkeypatch, capsys, shards, tmp_path):
    torch.manual_seed(0)
    cfg = VGGishishConfig(model=VGGishishModelConfig(conv_layers=TINY_LAYERS, num_classes=6, hidden=32))
    path = save_checkpoint(tmp_path / "v.ckpt", stage="vggishish", config=cfg.to_dict(),
                           state_dict=VGGishish(cfg.model).state_dict())
    clips = _clips(shards, "test")
    fake = _write_wavs(tmp_path / "fake", clips, [c["id"] for c in clips])
    res = _eval(monkeypatch, capsys, shards, fake, path, tmp_path / "v.json", "--metrics", "fid,isc,mkl")
    assert res["classifier_stage"] == "vggishish" and abs(res["metrics"]["mkl"]) < 1e-3


def _error(monkeypatch, capsys, *args) -> str:
    code, _, err = vgs(monkeypatch, capsys, "eval", *map(str, args))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_eval_errors_are_one_line(monkeypatch, capsys, shards, classifier, tmp_path):
    base = ["--real", shards, "--classifier", classifier]
    assert "fake folder not found" in _error(monkeypatch, capsys, *base, "--fake", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "no .npy mels or audio files" in _error(monkeypatch, capsys, *base, "--fake", tmp_path / "empty")
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    for k in range(3):
        np.save(strangers / f"zzz_{k}_sample_0.npy", np.random.default_rng(k).random((80, 860)).astype(np.float32))
    assert "no fake file name matches" in _error(monkeypatch, capsys, *base, "--fake", strangers, "--metrics", "mkl")
    assert "unknown metric" in _error(monkeypatch, capsys, *base, "--fake", strangers, "--metrics", "fid,psnr")
    wrong = save_checkpoint(tmp_path / "voc.ckpt", stage="vocoder", config={}, state_dict={})
    assert "expected melception or vggishish" in _error(monkeypatch, capsys, "--real", shards, "--classifier", wrong,
                                                         "--fake", strangers)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "x_sample_0.npy", np.zeros((80, 100), np.float32))
    assert "need at least 848" in _error(monkeypatch, capsys, *base, "--fake", bad)
    np.save(bad / "x_sample_0.npy", np.full((80, 860), -1.0, np.float32))
    assert "[0, 1] scale" in _error(monkeypatch, capsys, *base, "--fake", bad)
    assert "real shard folder not found" in _error(monkeypatch, capsys, "--real", tmp_path / "nope",
                                                   "--classifier", classifier, "--fake", strangers)


def test_eval_pairs_the_reference_mel_file_names(monkeypatch, capsys, reference_dir, classifier, tmp_path):
    # shards holding the real VAS reference mels (ids "<class>/<video_id>"), scored against the reference's
    # own `mels/<class>/<video_id>_mel.npy` files: `_mel` stripped, class folder used, all pairs identical
    from vgs_cli.data.shard_writer import write_clips
    from vgs_cli.data.shards import ClipRecord

    files = sorted((reference_dir / "vas" / "mels").glob("*/*_mel.npy"))
    classes = sorted({f.parent.name for f in files})
    records = [ClipRecord(id=f"{f.parent.name}/{f.stem[:-4]}", split="test", mel=np.load(f),
                          wav=np.zeros(220500, np.float32), label=classes.index(f.parent.name)) for f in files]
    shards = tmp_path / "vas_shards"
    write_clips(shards, records, classes=classes)
    res = _eval(monkeypatch, capsys, shards, reference_dir / "vas" / "mels", classifier, tmp_path / "vas.json")
    assert res["n_real"] == res["n_fake"] == res["n_fake_matched"] == len(files) >= 10
    assert res["metrics"]["mkl_pairs"] == len(files)
    assert abs(res["metrics"]["mkl"]) < 1e-4 and abs(res["metrics"]["fid"]) < 1e-3


def test_fake_scanning_and_id_matching_rules(tmp_path):
    from vgs_cli.metrics.fakes import FakeItem, match_real_ids, scan_fakes

    for rel in ("dog/video_1_sample_0.npy", "dog/video_1_sample_0.wav", "cls_0/video_2_sample_3.npy",
                "video_3.wav", "x_sample_1.npy", ".cache/ignored.npy", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = scan_fakes(tmp_path)  # a mel and a wav of the same name: the mel wins; hidden/other files skipped
    assert [(it.rel, it.kind) for it in items] == [("cls_0/video_2_sample_3", "mel"), ("dog/video_1_sample_0", "mel"),
                                                  ("video_3", "wav"), ("x_sample_1", "mel")]
    assert [it.kind for it in scan_fakes(tmp_path, "wav")] == ["wav", "wav"]
    real = ["dog/video_1", "baby/video_2", "cat/video_3", "dog/x", "cow/x"]
    # cls_0 = first class in sorted order (baby); video_3 by its unique base name; "x" is ambiguous -> None
    assert match_real_ids(items, real, classes=["dog", "baby", "cat", "cow"]) == [
        "baby/video_2", "dog/video_1", "cat/video_3", None]
    assert match_real_ids(items[2:3], ["cat_video_3"]) == [None]  # "video_3" is not "cat_video_3"
    flat = FakeItem(tmp_path / "cat_video_3_sample_0.npy", "mel", "cat_video_3_sample_0")
    assert match_real_ids([flat], real) == ["cat/video_3"]  # the reference's <class>_<video_id> key
