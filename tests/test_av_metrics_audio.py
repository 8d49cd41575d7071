"""`vgs eval`'s av-benchmark audio metrics: FD/KL/IS on fixed features equal av-benchmark's formulas (written out
here with numpy/scipy), pairing with several samples per clip (no name mangling), the published file layouts
load strictly through --weights-dir (a wrong layout is one line), a missing file offline is one line, and a CLI
run of `--protocol av-benchmark` on tiny wavs writes the table, --json and --per-file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
import torch
from _cli import run_vgs

from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.metrics import fakes as F
from vgs_cli.metrics.av_eval import PROTOCOLS, parse_selection
from vgs_cli.metrics.av_formulas import kl_per_pair, mean_ci95
from vgs_cli.metrics.fid import fid
from vgs_cli.metrics.isc import inception_score

KEYS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "checkpoint_keys"
FILES = {"passt": ("passt", "passt-s-f128-p16-s10-ap.476-swa.pt"),
         "panns": ("panns_cnn14_16k", "Cnn14_16k_mAP=0.438.pth"),
         "vggish": ("vggish", "vggish-10086976.pth")}


# --- av-benchmark's formulas, written out from their definitions ------------------------------------------
def ref_fd(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def ref_kl(gt: np.ndarray, pred: np.ndarray) -> float:
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    p, q = softmax(gt), softmax(pred)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def ref_is(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    x = logits[np.random.RandomState(seed).permutation(len(logits))]
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n, scores = len(x), []
    for i in range(splits):
        c = p[i * n // splits:(i + 1) * n // splits]
        scores.append(np.exp(np.mean(np.sum(c * (np.log(c) - np.log(c.mean(0, keepdims=True))), 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_fd_kl_is_equal_av_benchmark_formulas():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.3, 1.2, size=(50, 8))
    assert fid(a, b) == pytest.approx(ref_fd(a, b), rel=1e-9)
    few = rng.normal(size=(5, 16))  # fewer items than dimensions: singular covariances, the eps retry
    assert fid(few, few + 0.1) == pytest.approx(ref_fd(few, few + 0.1), rel=1e-6, abs=1e-6)
    gt, pred = rng.normal(size=(7, 527)), rng.normal(size=(7, 527))
    assert float(kl_per_pair(gt, pred).mean()) == pytest.approx(ref_kl(gt, pred), rel=1e-12)
    logits = rng.normal(0, 3, size=(53, 527))
    assert inception_score(logits, 10, seed=2020) == pytest.approx(ref_is(logits), rel=1e-12)


def test_fd_with_a_large_imaginary_part_is_an_error_not_minus_one(monkeypatch):
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m, disp=False: (np.eye(len(m)) * (1 + 1j), 0.0))
    with pytest.raises(VgsError, match="imaginary"):
        fid(np.eye(3), np.eye(3) * 2)


def test_mean_ci95_is_the_t_interval():
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)
    assert np.isnan(mean_ci95([1.0])[1])


def test_pairing_keeps_every_sample_and_every_id_length(tmp_path):
    # ids of 18/20/21/30 characters are what av-benchmark's clean_sample_name rewrites (and so drops)
    reals = ["fireworks_video_02997", "a" * 18, "b" * 20, "c" * 30, "dog/video_00001"]
    names = [f"{r.rsplit('/', 1)[-1]}_sample_{k}.wav" for r in reals for k in range(3)]
    for n in names:
        (tmp_path / n).write_bytes(b"RIFF")
    items = F.scan_fakes(tmp_path, "wav")
    ids = F.match_real_ids(items, reals)
    assert sorted(zip(ids, (it.path.name for it in items), strict=True)) == sorted(
        (r, f"{r.rsplit('/', 1)[-1]}_sample_{k}.wav") for r in reals for k in range(3))


def test_metric_selection():
    assert parse_selection(None, "av-benchmark") == PROTOCOLS["av-benchmark"]
    assert parse_selection(None, None) == ("fid", "kid", "isc", "mkl")
    assert "is_passt" in parse_selection("all", None) and "fid" in parse_selection("all", None)
    with pytest.raises(VgsError, match="unknown metric"):
        parse_selection("fd_clap", None)


# --- published layouts, random weights -------------------------------------------------------------------
def _random_state(manifest: str, seed: int = 0) -> dict[str, torch.Tensor]:
    if not (KEYS / f"{manifest}.json").is_file():
        pytest.skip("../shared/reference/checkpoint_keys is not here")
    spec = json.loads((KEYS / f"{manifest}.json").read_text())
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in spec["keys"].items():
        if k in spec.get("non_float32", {}):
            out[k] = torch.zeros(shape, dtype=torch.int64)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random weights in each published file's layout, under the published names."""
    folder = tmp_path_factory.mktemp("metric_weights")
    for net, (manifest, filename) in FILES.items():
        state = _random_state(manifest)
        torch.save({"model": state} if net == "panns" else state, folder / filename)
    return folder


@pytest.mark.slow  # three ~80M-parameter files written and read back
@pytest.mark.parametrize("net", ["passt", "panns", "vggish"])
def test_published_layouts_load_strictly_through_weights_dir(weights, net, tmp_path):
    pytest.importorskip("torchvggish")
    from vgs_cli.loading.metric_nets import load_audio_net

    loaded = load_audio_net(net, weights)
    want = torch.load(weights / FILES[net][1], weights_only=True)
    want = want["model"] if net == "panns" else want
    got = loaded.module.state_dict()
    key = next(iter(want))
    assert torch.equal(got[("net." if net == "passt" else "") + key], want[key])
    bad = tmp_path / FILES[net][1]  # the same file with one key renamed: one line naming it
    state = dict(want)
    state["renamed." + key] = state.pop(key)
    torch.save({"model": state} if net == "panns" else state, bad)
    with pytest.raises(CheckpointError, match="weights do not fit the model: missing") as err:
        load_audio_net(net, tmp_path)
    assert "\n" not in str(err.value)


def test_missing_weight_file_offline_is_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "fake").mkdir()
    sf.write(tmp_path / "fake" / "x.wav", np.zeros(16000, np.float32), 16000)
    code = run_vgs(monkeypatch, "eval", "--real", str(tmp_path / "fake"), "--fake", str(tmp_path / "fake"),
                   "--metrics", "fd_panns", "--weights-dir", str(tmp_path / "empty"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "Cnn14_16k_mAP=0.438.pth" in err[0] and "https://zenodo.org/record/3987831" in err[0]


def test_skip_missing_scores_only_what_has_weights_here(monkeypatch, capsys, tmp_path):
    """`make demo` and `vgs reproduce` score today's metrics "when their weights are present": a metric whose
    file is neither in --weights-dir nor in the cache is left out and named, nothing is downloaded."""
    import json

    from vgs_cli.metrics.av_eval import PROTOCOLS, split_by_weights

    monkeypatch.setenv("VGS_CACHE", str(tmp_path / "cache"))
    wdir = tmp_path / "w"
    wdir.mkdir()
    keep, missing = split_by_weights(PROTOCOLS["av-benchmark"] + ("fid",), wdir)
    assert keep == ("fid",) and set(missing) == set(PROTOCOLS["av-benchmark"])
    assert missing["fd_passt"] == "passt-s-f128-p16-s10-ap.476-swa.pt" and missing["desync"] == "synchformer_state_dict.pth"
    (wdir / "vggish-10086976.pth").write_bytes(b"x")  # present (its content is checked only when loaded)
    keep, missing = split_by_weights(("fd_vggish", "kl_panns"), wdir)
    assert keep == ("fd_vggish",) and list(missing) == ["kl_panns"]

    (wdir / "vggish-10086976.pth").unlink()
    (tmp_path / "fake").mkdir()
    sf.write(tmp_path / "fake" / "x.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "r.json"
    code = run_vgs(monkeypatch, "eval", "--real", str(tmp_path / "fake"), "--fake", str(tmp_path / "fake"),
                   "--protocol", "av-benchmark", "--weights-dir", str(wdir), "--skip-missing", "--json", str(out))
    printed = capsys.readouterr().out
    assert code == 0 and "skipped fd_passt" in printed and "nothing scored" in printed
    r = json.loads(out.read_text())
    assert r["metrics"] == {} and set(r["skipped"]) == set(PROTOCOLS["av-benchmark"])
    assert not (tmp_path / "cache" / "weights").exists()  # nothing was downloaded


# --- the CLI end to end ---------------------------------------------------------------------------------
def _wavs(folder: Path, names: list[str], seed: int, sr: int, channels: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        x = rng.normal(0, 0.2, size=(int(sr * 1.5), channels)).astype(np.float32) + 0.1  # DC: removed
        sf.write(folder / f"{n}.wav", x, sr)


@pytest.fixture
def small_weights(monkeypatch, tmp_path) -> Path:
    """PaSST and Cnn14 at a small width and depth (their full-size files load strictly in
    test_published_layouts_load_strictly_through_weights_dir; here the driver is under test, and the full-size
    pair cost ~70 s of the suite), saved in the published file layouts; VGGish at its only size."""
    from vgs_cli.loading import metric_nets
    from vgs_cli.models.cnn14 import Cnn14, Cnn14Config
    from vgs_cli.models.passt import PaSSTAudio, PaSSTConfig

    full = metric_nets.build
    small = {"passt": lambda: PaSSTAudio(PaSSTConfig(embed_dim=64, depth=1, num_heads=2)),
             "panns": lambda: Cnn14(Cnn14Config(widths=(8, 8, 16, 16, 32, 64)))}
    monkeypatch.setattr(metric_nets, "build", lambda name: small[name]() if name in small else full(name))
    folder = tmp_path / "small_weights"
    folder.mkdir()
    torch.manual_seed(0)
    for net, (_, filename) in FILES.items():
        state = {k.removeprefix("net."): v for k, v in metric_nets.build(net).state_dict().items()}
        torch.save({"model": state} if net == "panns" else state, folder / filename)
    return folder


@pytest.mark.slow  # VGGish's 72M random parameters written and read, PaSST's front end over 10-s inputs
def test_cli_av_benchmark_table_json_and_per_file(monkeypatch, capsys, small_weights, tmp_path):
    pytest.importorskip("torchvggish")
    weights = small_weights
    clips = ["fireworks_video_02997", "dog_0001"]
    _wavs(tmp_path / "real", clips, 0, 44100, channels=2)
    _wavs(tmp_path / "fake", [f"{c}_sample_{k}" for c in clips for k in range(2)], 1, 16000)
    monkeypatch.setenv("VGS_CACHE", str(tmp_path / "cache"))

    def ib(pairs, **_):  # D's video metrics are stood in for: the driver's pairing and plumbing are tested
        return [{"ib": 0.1 * i, "windows": [{"start_s": 0.0, "ib": 0.1 * i}]} for i in range(len(pairs))]

    def desync(pairs, **_):
        return [{"desync": 0.2, "windows": [{"start_s": 0.0, "offset_s": 0.2}]} for _ in pairs]

    import vgs_cli.metrics.av_metrics as av
    monkeypatch.setattr(av, "ib_scores", ib)
    monkeypatch.setattr(av, "desync_scores", desync)
    (tmp_path / "videos").mkdir()
    for c in clips:
        (tmp_path / "videos" / f"{c}.mp4").write_bytes(b"")
    out_json, out_csv = tmp_path / "r.json", tmp_path / "p.csv"
    args = ["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--protocol", "av-benchmark",
            "--weights-dir", str(weights), "--videos", str(tmp_path / "videos"), "--isc-splits", "2",
            "--audio-length", "1", "--json", str(out_json), "--per-file", str(out_csv)]
    code = run_vgs(monkeypatch, *args)
    out = capsys.readouterr()
    assert code == 0, out.err
    for label in ("FD_PaSST", "FD_PANNs", "FD_VGGish", "KL_PANNs", "KL_PaSST", "IS_PANNs", "IB-score", "DeSync"):
        assert label in out.out
    res = json.loads(out_json.read_text())
    m = res["metrics"]
    assert set(PROTOCOLS["av-benchmark"]) <= {k.removesuffix("_mean") for k in m}
    assert m["kl_panns_pairs"] == 4 and res["n_fake_matched"] == 4 and np.isfinite(m["fd_vggish"])
    assert m["ib"] == pytest.approx(0.15) and m["desync"] == pytest.approx(0.2)
    assert res["windows"]["fireworks_video_02997|fireworks_video_02997_sample_1.wav"]["desync"][0]["offset_s"] == 0.2
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["sample"] for r in rows if r["clip"] == "fireworks_video_02997"] == [
        "fireworks_video_02997_sample_0.wav", "fireworks_video_02997_sample_1.wav", "mean"]
    assert {"kl_panns", "kl_passt", "ib", "desync", "ib_ci95"} <= set(rows[0])
    # a second run costs only the cache: the features of every file are there
    cached = sorted(p.name for p in (tmp_path / "cache" / "features").rglob("*.npy"))
    assert len(cached) == 3 * 6
    assert run_vgs(monkeypatch, *args) == 0
    assert json.loads(out_json.read_text())["metrics"]["fd_passt"] == m["fd_passt"]


def test_a_pair_too_short_to_score_is_left_out_of_the_mean_and_ib_sees_the_audio_length(monkeypatch, tmp_path):
    """IB/DeSync return None for a clip too short to score: the mean is over the scored pairs (it was nan) and
    the JSON counts the skipped ones; IB's video side covers --audio-length seconds, as av-benchmark's."""
    from vgs_cli.metrics.av_eval import AVSettings, evaluate_av

    clips = ["a_clip", "b_clip"]
    _wavs(tmp_path / "real", clips, 0, 16000)
    _wavs(tmp_path / "fake", [f"{c}_sample_{k}" for c in clips for k in range(2)], 1, 16000)
    (tmp_path / "videos").mkdir()
    for c in clips:
        (tmp_path / "videos" / f"{c}.mp4").write_bytes(b"")
    seen = {}

    def ib(pairs, duration_s=None, **_):
        seen["duration_s"] = duration_s
        return [{"ib": 0.25, "windows": []} for _ in pairs]

    def desync(pairs, **_):  # b_clip's video is "too short": both of its samples are skipped
        return [{"desync": None, "windows": [], "skipped": "short"} if p.key == "b_clip" else
                {"desync": 0.4 + 0.2 * int(p.sample[-5]), "windows": []} for p in pairs]

    import vgs_cli.metrics.av_metrics as av
    monkeypatch.setattr(av, "ib_scores", ib)
    monkeypatch.setattr(av, "desync_scores", desync)
    res = evaluate_av(str(tmp_path / "real"), tmp_path / "fake", AVSettings(metrics=("ib", "desync"), audio_length=5.0),
                      videos=tmp_path / "videos")
    m = res["metrics"]
    assert seen["duration_s"] == 5.0
    assert m["desync"] == pytest.approx(0.5) and m["desync_pairs"] == 2 and m["desync_skipped_pairs"] == 2
    assert m["ib"] == pytest.approx(0.25) and m["ib_pairs"] == 4 and "ib_skipped_pairs" not in m
    # the interval is over the two sample indices' means (0.4, 0.6), the skipped pairs in neither: t(0.975, 1) x 0.1
    assert m["desync_samples"] == 2 and m["desync_ci95"] == pytest.approx(12.7062047 * np.std([0.4, 0.6], ddof=1) / np.sqrt(2))


def test_download_metrics_fetches_every_metric_network(monkeypatch, capsys, tmp_path):
    from vgs_cli.loading.metric_nets import metric_weight_names
    from vgs_cli.loading.weights import get_entry

    names = metric_weight_names()
    assert {"passt", "panns_cnn14_16k", "vggish"} <= set(names) and "resnet50" not in names
    monkeypatch.setenv("VGS_CACHE", str(tmp_path))
    (tmp_path / "weights").mkdir()
    for n in names:  # already cached: nothing to download, each is reported where it lies
        (tmp_path / "weights" / get_entry(n).filename).write_bytes(b"x")
    assert run_vgs(monkeypatch, "download", "--metrics") == 0
    out = capsys.readouterr().out
    assert all(f"{n}: {tmp_path / 'weights' / get_entry(n).filename}" in out for n in names)
