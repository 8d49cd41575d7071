"""`vgs download`: published names and aliases, fetched from a local HTTP server (resume, MD5), unpacked
safely and imported; the registry is the vendored copy of official_files.json."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

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

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.data.download import ChecksumError
from vgs_cli.errors import DataError, VgsError
from vgs_cli.official import registry
from vgs_cli.official.fetch import download_official

RUN = "2021-07-29T13-34-39_vas_transformer"  # setting c, 212 ResNet-50 frames


@pytest.fixture(scope="module")
def ref() -> Path | None:
    return REFERENCE if (REFERENCE / "checkpoint_keys").is_dir() else None


def _tar_gz(folder: Path, *, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _use_entries(monkeypatch, files: dict[str, bytes], md5: dict[str, str] | None = None) -> None:
    """The real entries for these runs, with the MD5s of the test files (or the given wrong ones)."""
    chosen = []
    for run, data in files.items():
        real = next(e for e in registry.entries() if e.run == run)
        digest = (md5 or {}).get(run, hashlib.md5(data).hexdigest())
        chosen.append(dataclasses.replace(real, md5=None if real.md5 is None else digest))
    monkeypatch.setattr(registry, "entries", lambda: tuple(chosen))


_vgs = run_vgs  # in-process `vgs ARGS` -> exit code


def _gets(srv, path):
    return [h for (m, p, h) in srv.requests if m == "GET" and p == path]


# ------------------------------------------------------------------------------------------ registry

def test_registry_names_aliases_and_urls(monkeypatch):
    assert registry.find("vas_codebook").run == "2021-06-06T19-42-53_vas_codebook"
    assert registry.find(f"{RUN}.tar.gz").run == RUN
    assert registry.find("vas_c_212feats_resnet50").run == RUN
    assert registry.find("melgan").filename == "netG.pt" and registry.find("melgan").md5 is None
    aliases = [e.alias for e in registry.entries() if e.alias]
    assert len(aliases) == len(set(aliases)) and len(registry.entries()) == 33
    with pytest.raises(VgsError, match="did you mean vas_codebook"):
        registry.find("vas_codebok")
    entry = registry.find("vggishish")
    assert entry.url_from(None).startswith("https://a3s.fi/") and entry.url_from("http://h:1/x/") == "http://h:1/x/vggishish16.pt"
    monkeypatch.setenv(registry.BASE_ENV, "http://mirror")
    assert registry.find(RUN).url_from(None) == f"http://mirror/models/{RUN}.tar.gz"
    if (REFERENCE / "official_files.json").is_file():  # the vendored copy is the shared one
        shared = json.loads((REFERENCE / "official_files.json").read_text())
        assert [e.run for e in registry.entries()] == [e["run"] for e in shared]


def test_list_prints_every_file(monkeypatch, capsys):
    assert _vgs(monkeypatch, "download", "--list") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 33
    assert any(line.startswith(f"{RUN} (vas_c_212feats_resnet50) [transformer]") and "FID 22.6*" in line
               for line in lines)


# ------------------------------------------------------------------------------------------ download

def test_interrupted_download_resumes_then_unpacks_and_imports(tmp_path, ref, monkeypatch, capsys):
    cfg = small_gpt("feats", 212)
    run = write_run(tmp_path / "src", RUN, random_state(transformer_layout(ref, cfg), seed=1), transformer_project(cfg))
    data = _tar_gz(run)
    _use_entries(monkeypatch, {RUN: data})
    out = tmp_path / "models"
    with serve({f"/pub/models/{RUN}.tar.gz": data}, cut_after={f"/pub/models/{RUN}.tar.gz": len(data) // 3}) as srv:
        monkeypatch.setenv(registry.BASE_ENV, srv.url("/pub"))
        code = _vgs(monkeypatch, "download", "vas_c_212feats_resnet50", "-o", str(out))
        gets = _gets(srv, f"/pub/models/{RUN}.tar.gz")
    assert code == 0, capsys.readouterr().err
    assert len(gets) == 2 and gets[1]["Range"] == f"bytes={len(data) // 3}-"  # resumed, not restarted
    t_ckpt = load_checkpoint(out / "transformer.ckpt", stage="transformer")
    assert t_ckpt["extra"]["official"]["run"] == RUN and t_ckpt["extra"]["official"]["paper_fid"] == "22.6*"
    assert t_ckpt["extra"]["extractor"] == "resnet50"
    assert (out / "codebook.ckpt").is_file() and (out / "downloads" / f"{RUN}.tar.gz").read_bytes() == data
    assert sorted(p.name for p in (out / "downloads").iterdir() if p.is_dir()) == []  # scratch removed
    assert "written: " in capsys.readouterr().out


def test_md5_mismatch_is_an_error_and_nothing_is_imported(tmp_path, ref, monkeypatch):
    cfg = small_gpt("feats", 212)
    run = write_run(tmp_path / "src", RUN, random_state(transformer_layout(ref, cfg), seed=1), transformer_project(cfg))
    data = _tar_gz(run)
    _use_entries(monkeypatch, {RUN: data}, md5={RUN: "0" * 32})
    with serve({f"/models/{RUN}.tar.gz": data}) as srv:
        with pytest.raises(ChecksumError, match="md5 mismatch"):
            download_official([RUN], tmp_path / "out", base_url=srv.base)
    assert not list((tmp_path / "out").glob("*.ckpt"))
    left = sorted(p.name for p in (tmp_path / "out" / "downloads").iterdir())
    assert left == []  # the corrupt download (and its .part) is deleted, the lock file too


def test_archive_with_path_traversal_is_refused(tmp_path, ref, monkeypatch):
    cfg = small_gpt("feats", 212)
    run = write_run(tmp_path / "src", RUN, random_state(transformer_layout(ref, cfg), seed=1), transformer_project(cfg))
    data = _tar_gz(run, extra={"../../escaped.txt": b"gotcha"})
    _use_entries(monkeypatch, {RUN: data})
    with serve({f"/models/{RUN}.tar.gz": data}) as srv:
        with pytest.raises(DataError, match="unsafe member path"):
            download_official([RUN], tmp_path / "a" / "out", base_url=srv.base)
    assert not list(tmp_path.rglob("escaped.txt")) and not list((tmp_path / "a" / "out").glob("*.ckpt"))


def test_classifier_brings_its_statistics_and_melgan_has_no_md5(tmp_path, ref, monkeypatch):
    stats = write_stats(tmp_path / "stats.txt").read_bytes()
    save_classifier(tmp_path / "m.pt", random_state(melception_layout(ref), seed=2))
    torch.save(random_state(melgan_layout(ref), seed=3), tmp_path / "netG.pt")
    files = {"/melception-21-05-10T09-28-40.pt": (tmp_path / "m.pt").read_bytes(),
             "/train_means_stds_melspec_10s_22050hz.txt": stats, "/melgan_ckpt/netG.pt": (tmp_path / "netG.pt").read_bytes()}
    _use_entries(monkeypatch, {"melception-21-05-10T09-28-40.pt": files["/melception-21-05-10T09-28-40.pt"],
                               "train_means_stds_melspec_10s_22050hz.txt": stats,
                               "melgan_netG.pt": files["/melgan_ckpt/netG.pt"]})
    with serve(files) as srv:
        results = download_official(["melception", "melgan"], tmp_path / "out", base_url=srv.base, log=lambda m: None)
    assert [w.path.name for r in results for w in r.written] == ["melception.ckpt", "vocoder.ckpt"]
    assert (tmp_path / "out" / "downloads" / "train_means_stds_melspec_10s_22050hz.txt").read_bytes() == stats
    assert any("without an MD5" in n and "SHA-256" in n for n in results[1].notes)
    mel = load_checkpoint(tmp_path / "out" / "melception.ckpt", stage="melception")
    assert mel["extra"]["official"]["md5"] == hashlib.md5(files["/melception-21-05-10T09-28-40.pt"]).hexdigest()
