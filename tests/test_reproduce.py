"""`vgs reproduce` end to end on tiny official-format files served by a local HTTP mirror: fetch + import the
transformer (with its codebook), MelGAN and Melception, generate, score, print the table beside the paper's
row; a second run finds everything (no download) and generates nothing new."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import run_vgs
from _http_server import serve
from _official_fixtures import (
    melception_layout,
    melgan_layout,
    random_state,
    save_classifier,
    small_gpt,
    transformer_layout,
    transformer_project,
    write_run,
    write_stats,
)
from conftest import REFERENCE

from vgs_cli.errors import VgsError
from vgs_cli.official import registry
from vgs_cli.reproduce.run import paper_number, partial_reason, protocol_split

NAME = "vas_c_212feats_resnet50"  # 2021-07-29T13-34-39_vas_transformer: VAS, 212 ResNet-50 frames


def test_protocol_helpers():
    assert protocol_split(registry.find(NAME).info) == "valid"  # the paper's VAS "test" set is its valid split
    assert protocol_split(registry.find("vggsound_a_nofeats").info) == "test"
    assert paper_number("22.6*") == 22.6 and paper_number("9.7") == 9.7 and paper_number(None) is None
    assert partial_reason(None, 768, 10, 10) is None and partial_reason(768, 768, 10, 10) is None
    assert partial_reason(5, 768, 2, 10) == "first 5 of 768 clips; 2 sample(s) per clip instead of 10"
    assert partial_reason(None, 14512, 1, 1) is None  # VGGSound's protocol: 1 sample per clip
    from vgs_cli.reproduce.models import transformer_entry

    with pytest.raises(VgsError, match="not a transformer"):
        transformer_entry("melgan")


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def _mirror(tmp: Path, ref: Path | None) -> dict[str, bytes]:
    """URL path -> bytes of the four official files (+ the classifier statistics), official formats."""
    cfg = small_gpt("feats", 212)
    run = write_run(tmp / "src", registry.find(NAME).run, random_state(transformer_layout(ref, cfg), seed=1),
                    transformer_project(cfg))
    save_classifier(tmp / "m.pt", random_state(melception_layout(ref), seed=2))
    torch.save(random_state(melgan_layout(ref), seed=3), tmp / "netG.pt")
    data = {NAME: _tar_gz(run), "melception": (tmp / "m.pt").read_bytes(), "melgan": (tmp / "netG.pt").read_bytes(),
            "stats": write_stats(tmp / "stats.txt").read_bytes()}
    return {registry.find(k).rel_path: v for k, v in data.items()}


def _shards(root: Path, n: int = 3) -> Path:
    """A VAS-like shard folder: `n` valid clips with (random) ResNet-50 features as ingested official ones."""
    from vgs_cli.data import shard_writer, shards
    from vgs_cli.data.labels import VAS_CLASSES
    from vgs_cli.prepare.sources.ingest import EXTRACTORS

    rng = np.random.default_rng(0)
    recs = [shards.ClipRecord(id=f"{VAS_CLASSES[i]}/video_{i:05d}", split=split, label=i,
                              mel=rng.uniform(0, 1, (80, 860)).astype(np.float32),
                              wav=(0.1 * rng.standard_normal(220500)).astype(np.float32),
                              feats={"resnet50": rng.standard_normal((215, 2048)).astype(np.float32)})
            for i, split in enumerate(["valid"] * n + ["train"])]
    shard_writer.write_clips(root, recs, classes=list(VAS_CLASSES), extractors={"resnet50": EXTRACTORS["resnet50"][1]})
    return root


_vgs = run_vgs  # in-process `vgs ARGS` -> exit code


@pytest.mark.slow
def test_reproduce_end_to_end_from_a_mirror(tmp_path, monkeypatch, capsys):
    ref = REFERENCE if (REFERENCE / "checkpoint_keys").is_dir() else None
    files = _mirror(tmp_path, ref)
    by_rel = {e.rel_path: e for e in registry.entries()}
    entries = tuple(dataclasses.replace(e, md5=None if e.md5 is None else hashlib.md5(files[e.rel_path]).hexdigest())
                    for e in by_rel.values() if e.rel_path in files)
    monkeypatch.setattr(registry, "entries", lambda: entries)  # the real rows, with the test files' MD5s
    data, out, models = _shards(tmp_path / "data"), tmp_path / "out", tmp_path / "models"
    args = ["reproduce", NAME, "--data", str(data), "-o", str(out), "--models", str(models), "--limit", "2",
            "--samples", "2", "--device", "cpu"]
    with serve({f"/pub/{k}": v for k, v in files.items()}) as srv:
        monkeypatch.setenv(registry.BASE_ENV, srv.url("/pub"))
        monkeypatch.setenv("VGS_CACHE", str(tmp_path / "cache"))  # no metric weights here
        code = _vgs(monkeypatch, *args)
        printed = capsys.readouterr()
        assert code == 0, printed.err[-3000:]
        fetched = len(srv.requests)
        assert fetched >= 4

        r = json.loads((out / "reproduce.json").read_text())
        assert r["partial"] and r["partial_reason"] == "first 2 of 3 clips; 2 sample(s) per clip instead of 10"
        # the reference's sampler for a VAS transformer on the VAS codebook (README: TOP_K=64), printed too
        assert r["sampler"]["top_k"] == 64 and r["sampler"]["temperature"] == 1.0 and r["sampler"]["paper_protocol"]
        assert r["paper_protocol"] is False  # partial
        assert "top-k 64, temperature 1" in printed.out and "TOP_K=64" in printed.out
        # today's protocol: no metric network's weights on this machine, so each metric is named, none scored
        assert r["modern"]["metrics"] == {} and len(r["modern"]["skipped"]) == 8
        assert "today's protocol: fd_passt" in printed.out and "vgs download --metrics" in printed.out
        assert r["split"] == "valid" and r["clips"] == 2 and r["eval"]["n_fake"] == 4 and r["eval"]["n_real"] == 3
        assert r["paper"] == {"fid": "22.6*", "mkl": "5.8*"} and sorted(r["fetched"]) == sorted([NAME, "melgan",
                                                                                                "melception"])
        rows = {row["metric"]: row for row in r["table"]}
        assert rows["FID"]["ours"] == r["metrics"]["fid"] and math.isfinite(rows["FID"]["ours"])
        assert rows["MKL"]["difference"] == pytest.approx(r["metrics"]["mkl"] - 5.8)
        assert r["eval"]["n_fake_matched"] == 4  # every sample paired with its own real clip
        table = printed.out
        assert "FID" in table and "22.6*" in table and "5.8*" in table and "PARTIAL RUN" in table
        assert f"{rows['FID']['ours']:.4f}" in table
        assert len(list((out / "samples").rglob("*_sample_*.npy"))) == 4
        assert (models / registry.find(NAME).run / "transformer.ckpt").is_file()

        code = _vgs(monkeypatch, *args)  # everything is there: no request, no new sample, same numbers
        again = capsys.readouterr()
        assert code == 0, again.err[-3000:]
        assert len(srv.requests) == fetched and "2 to generate" not in again.out and "0 to generate" in again.out
        r2 = json.loads((out / "reproduce.json").read_text())
        assert r2["fetched"] == [] and r2["metrics"] == r["metrics"]


@pytest.mark.parametrize("command", ["reproduce", "download"])
def test_offline_is_one_line_saying_the_network_is_unreachable_and_what_to_do(command, tmp_path, monkeypatch,
                                                                              capsys):
    """Issue 25: offline, `vgs download`/`vgs reproduce` said "giving up on https://... after 5 retries (URLError:
    Name or service not known)" and left downloads/<file>.lock behind."""
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)  # the retry's backoff
    models = tmp_path / "models"
    args = {"reproduce": ["reproduce", NAME, "--data", str(_shards(tmp_path / "data")), "-o", str(tmp_path / "out"),
                          "--models", str(models)],
            "download": ["download", NAME, "-o", str(models)]}[command]
    code = _vgs(monkeypatch, *args, "--base-url", "http://vgs-no-such-host.invalid/pub")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: cannot reach vgs-no-such-host.invalid: the network is unreachable (name "
                          "resolution failed; 2 attempts); check the connection, or put a copy of the file at ")
    assert err.endswith(", or pass --base-url with a mirror (a URL, or a folder holding the official files)\n")
    assert not [p for p in models.rglob("*") if p.is_file()]  # no lock, no .part


def test_models_already_imported_by_vgs_download_are_used_as_they_are(tmp_path):
    """`vgs download -o MODELS` puts the files straight into MODELS: found by their recorded official run;
    a transformer of another run is not taken (it is fetched: here from a mirror without it, an error)."""
    from vgs_cli.checkpoint import save_checkpoint
    from vgs_cli.reproduce.models import find_or_fetch, official_run

    run = registry.find(NAME).run
    files = {"transformer.ckpt": run, "codebook.ckpt": run, "vocoder.ckpt": registry.find("melgan").run,
             "melception.ckpt": registry.find("melception").run}
    for name, official in files.items():
        save_checkpoint(tmp_path / name, stage=name.split(".")[0], config={}, state_dict={"w": torch.zeros(1)},
                        extra={"official": {"run": official}})
    assert official_run(tmp_path / "vocoder.ckpt") == "melgan_netG.pt" and official_run(tmp_path / "none") is None
    found = find_or_fetch(NAME, tmp_path, base_url="http://127.0.0.1:9", log=lambda m: None)
    assert found.fetched == () and found.transformer == tmp_path / "transformer.ckpt"
    assert (found.vocoder, found.melception) == (tmp_path / "vocoder.ckpt", tmp_path / "melception.ckpt")
    with serve({}) as srv, pytest.raises(VgsError, match="404"):
        find_or_fetch("vas_a_nofeats", tmp_path, base_url=srv.base, log=lambda m: None)


def test_each_row_samples_as_the_reference_did_and_an_override_says_it_leaves_the_protocol():
    """The reference's evaluation variables: VAS transformers on the VAS codebook top-k 64, on the VGGSound
    codebook 512; VGGSound transformers 512 with 1 sample per video; temperature 1 everywhere."""
    from vgs_cli.reproduce.run import ReproduceOptions, run_sampler, sampler_for

    rows = [e for e in registry.entries() if e.kind == "transformer"]
    assert len(rows) == 24
    for e in rows:
        s = sampler_for(e.info)
        vas = e.info["transformer_data"] == "VAS"
        expected_k = 64 if vas and e.info["codebook"] == "VAS" else 512
        assert (s.top_k, s.temperature, s.samples_per_clip) == (expected_k, 1.0, 10 if vas else 1), e.run
        assert "README" in s.source and "sampler.yaml" in s.source
    ref = sampler_for(registry.find(NAME).info)
    same = run_sampler(ref, ReproduceOptions())
    assert same["paper_protocol"] and same["note"] is None and same["top_k"] == 64
    other = run_sampler(ref, ReproduceOptions(top_k=100))
    assert not other["paper_protocol"] and other["top_k"] == 100
    assert other["note"] == "top-k 100 instead of the reference's 64: not the paper's sampling protocol"


def test_todays_protocol_scores_what_has_weights_and_leaves_out_ib_desync_without_videos(monkeypatch, tmp_path):
    """`vgs reproduce` adds the av-benchmark metrics whose weights are present; shards that record no source
    videos cannot give IB-score / DeSync: those two are left out with the reason, the audio ones still scored."""
    from vgs_cli.errors import DataError
    from vgs_cli.metrics import av_eval
    from vgs_cli.reproduce import run

    monkeypatch.setattr(av_eval, "split_by_weights", lambda m, w=None: (("fd_vggish", "desync"),
                                                                         {"fd_passt": "passt.pt"}))
    calls = []

    def fake_eval(real, fake, settings, device="cpu"):
        calls.append(settings.metrics)
        if "desync" in settings.metrics:
            raise DataError("IB-score/DeSync need the source video of clip 'a': none found")
        return {"metrics": {"fd_vggish": 1.5}, "weights_sha256": {"vggish": "ab"}, "audio_length_s": 8.0}

    monkeypatch.setattr(av_eval, "evaluate_av", fake_eval)
    out = run._modern(tmp_path, "valid", tmp_path / "samples", run.ReproduceOptions(), log=lambda m: None)
    assert calls == [("fd_vggish", "desync"), ("fd_vggish",)]
    assert out["metrics"] == {"fd_vggish": 1.5}
    assert out["skipped"] == {"fd_passt": "passt.pt", "desync": "source videos"}
    assert out["notes"] and "source video" in out["notes"][0]
