"""The visual condition carries information, measured on the synthetic dataset itself.

Everything here is the real pipeline at a reduced size: `prepare_synthetic` (procedural H.264/AAC mp4s ->
mels + EfficientNet-Lite0 features), a tiny codebook trained with `vgs train codebook`'s task, then two tiny
transformers trained with the same data, budget and seed; only `--condition` differs (feats with all 212
frames vs none, the paper's "No Feats" baseline).

What was measured while writing this test (README, "Results"): the conditioned model leans on its features
(another class's features cost it ~0.4 nats/code), but its margin over the unconditioned model is small
(-0.06 to +0.075 nats/code over seeds, data sizes of 120-600 clips and budgets of 200-3000 steps), because the
only thing it takes from them is the class, which the unconditioned model infers from the codes once the
first event has sounded (worth at most ln 6 nats per clip to an ideal model, 0.007 nats/code). The timing
of the events, which the 212 frames also show, is not used: rolling the frames in time changes the loss by
< 0.005 nats/code, also with 4 layers x 128, 3000 steps or time-aligned sinusoidal position init. (An
experimental init that points one attention head at the frames of its own time does make the model use
timing, 0.16 nats/code after 2000 steps on 420 clips, but still without a clear margin over "none".)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vgs_cli.config.prepare import PRESETS
from vgs_cli.pipeline.loading import load_model
from vgs_cli.pipeline.prepare import prepare_synthetic
from vgs_cli.train.codes_cache import load_or_build_codes
from vgs_cli.train.runner import run
from vgs_cli.train.transformer import CodesDataset

CLIPS, SIZE, CODEBOOK_STEPS, STEPS = 120, 64, 400, 200


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cond_margin")
    data = root / "data"
    prepare_synthetic(data, PRESETS["tiny"].replace(image_size=SIZE), n_clips=CLIPS, seed=0, size=SIZE, jobs=1,
                      progress=False, log=lambda msg: None)
    run("codebook", data=data, preset="tiny", run_dir=root / "codebook", device="cpu",
        overrides=[f"train.steps={CODEBOOK_STEPS}", f"train.eval_every={CODEBOOK_STEPS}"])
    out = {"data": data}
    for condition in ("feats", "none"):
        out[condition] = root / condition
        run("transformer", data=data, preset="tiny", run_dir=out[condition], device="cpu",
            codebook=root / "codebook" / "checkpoints" / "best.ckpt", condition=condition, feat_frames=212,
            extractor=None, overrides=[f"train.steps={STEPS}", f"train.eval_every={STEPS // 3}"])
    return out


def _best_valid(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return min((r for r in rows if r["split"] == "valid"), key=lambda r: r["loss"])


def _valid_loss(run_dir: Path, data: Path, swap: bool = False) -> float:
    """Mean valid cross-entropy (nats/code) of the run's best checkpoint; `swap` feeds every clip the
    features of the next clip (cyclically) whose class differs."""
    model, cfg, _ = load_model(run_dir / "checkpoints" / "best.ckpt", "transformer")
    codes = load_or_build_codes(None, cfg.codebook_sha256, data, "valid", torch.device("cpu"))
    items = list(CodesDataset(codes, data, "valid", cfg))
    seq = torch.stack([i["codes"] for i in items])
    feats = torch.stack([i["feats"] for i in items])
    if swap:
        labels = [int(i["label"]) for i in items]
        n = len(items)
        other = [next(j % n for j in range(i + 1, i + n) if labels[j % n] != labels[i]) for i in range(n)]
        feats = feats[other]
    with torch.no_grad():
        logits = model.eval()(seq[:, :-1], feats, None)
    return F.cross_entropy(logits.transpose(1, 2), seq).item()


@pytest.mark.slow
def test_feature_conditioned_model_is_not_worse_than_the_unconditioned(synthetic_run):
    """Same data, codebook, budget and seed. Measured here: valid loss 1.536 (feats) vs 1.568 (none)
    nats/code. In runs of this set-up with transformer seeds 0-4 the margin ranged from -0.04 to +0.06, so it is
    not asserted to be positive: at this size the unconditioned model recovers the class from the codes
    nearly as well (issue 5's "clearly below" is NOT met on this dataset; see the module docstring)."""
    feats, none = _best_valid(synthetic_run["feats"]), _best_valid(synthetic_run["none"])
    assert feats["loss"] < none["loss"] + 0.05, (feats["loss"], none["loss"])
    assert feats["loss"] < 0.6 * torch.log(torch.tensor(64.0)).item()  # learned: well below chance (ln 64)


@pytest.mark.slow
def test_the_conditioned_model_relies_on_its_own_clip_s_features(synthetic_run):
    """Control for the margin above: giving every valid clip the features of a clip of another class costs
    the conditioned model far more than the margin, so what it learned comes from the condition's content,
    not from the extra parameters or positions. Measured: 1.536 with its own features, 1.972 with another
    class's."""
    data, run_dir = synthetic_run["data"], synthetic_run["feats"]
    own = _valid_loss(run_dir, data)
    assert own == pytest.approx(_best_valid(run_dir)["loss"], abs=1e-4)  # the same measurement as training's
    swapped = _valid_loss(run_dir, data, swap=True)
    assert swapped > own + 0.15, (own, swapped)
