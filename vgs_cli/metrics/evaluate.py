"""The `vgs eval` driver: score a folder of fakes against a shard split with a trained classifier.

Metrics (as in the paper / torch-fidelity): FID and KID on the pooled features, ISc on the fakes' unbiased
logits, MKL between each fake's and its own real clip's class distribution. Real-side outputs are cached
per (shard folder, split, manifest hash, classifier hash) in `<shards>/.cache/` (or the cache folder's `eval/`, `vgs_cli/cache.py`
when the shard folder is read-only), written atomically, so a second evaluation skips the real clips.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vgs_cli import __version__
from vgs_cli.cache import cache_path
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import atomic_path, file_sha256, write_json
from vgs_cli.metrics import fakes as F
from vgs_cli.metrics.features import OUTPUTS, batched, extract
from vgs_cli.metrics.fid import fid
from vgs_cli.metrics.isc import inception_score
from vgs_cli.metrics.kid import kid
from vgs_cli.metrics.mkl import mean_kl

METRICS = ("fid", "kid", "isc", "mkl")
CLASSIFIER_STAGES = ("melception", "vggishish")
CACHE_VERSION = 1


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = METRICS
    batch_size: int = 32
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    isc_splits: int = 10
    seed: int = 2020  # the reference's rng_seed for ISc shuffling and KID subsets
    fake_kind: str = "auto"
    use_cache: bool = True


def parse_metrics(text: str) -> tuple[str, ...]:
    """"fid,kid" -> ("fid", "kid"); "all" = every metric; unknown names are a user error."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return METRICS
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise VgsError(f"unknown metric(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def parse_real(spec: str) -> tuple[Path, str | None]:
    """"SHARDS[:SPLIT]" -> (folder, split or None)."""
    from vgs_cli.data.shards import SPLITS

    head, sep, tail = spec.rpartition(":")
    if sep and tail in SPLITS and head:
        return Path(head), tail
    if sep and head and Path(head).is_dir() and not Path(spec).exists():  # a folder, but no such split
        from vgs_cli.data.shards import read_manifest

        counts = read_manifest(Path(head)).get("splits", {})
        have = ", ".join(f"{s} ({n} clips)" for s, n in counts.items() if n) or "none with clips"
        raise VgsError(f"--real {spec}: {head} has no split {tail!r}; its splits: {have} (write {head}:SPLIT)")
    return Path(spec), None


def pick_split(root: Path, split: str | None) -> tuple[str, dict[str, Any]]:
    """The split to score against (default: test when it has clips, else valid) and the manifest."""
    from vgs_cli.data.shards import read_manifest

    if not root.is_dir():
        raise VgsError(f"real shard folder not found: {root}")
    manifest = read_manifest(root)
    counts = manifest.get("splits", {})
    if split is None:
        split = "test" if counts.get("test", 0) > 0 else "valid"
    if counts.get(split, 0) == 0:
        raise VgsError(f"{root}: the {split} split has no clips (splits: {counts})")
    return split, manifest


def _cache_path(root: Path, split: str, manifest_sha: str, clf_sha: str) -> list[Path]:
    name = f"eval_real_v{CACHE_VERSION}_{split}_{manifest_sha[:12]}_{clf_sha[:16]}.pt"
    home = cache_path("eval")  # the one cache folder (vgs_cli/cache.py)
    folder_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return [root / ".cache" / name, home / f"{folder_id}_{name}"]


def _read_cache(paths: list[Path]) -> dict[str, Any] | None:
    for path in paths:
        if path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                return {"ids": list(data["ids"]), **{k: data[k].numpy() for k in OUTPUTS}}
            except Exception:  # a damaged cache is recomputed, never fatal
                continue
    return None


def _write_cache(paths: list[Path], ids: list[str], outs: dict[str, np.ndarray]) -> Path | None:
    payload = {"ids": ids, **{k: torch.from_numpy(v) for k, v in outs.items()}}
    for path in paths:
        try:
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
            return path
        except OSError:  # read-only shard folder: try the user cache
            continue
    return None


def real_outputs(root: Path, split: str, model: torch.nn.Module, clf_sha: str, settings: EvalSettings,
                 device: torch.device, progress: Callable[[int], None] | None = None) -> tuple[list[str], dict, bool]:
    """(ids, classifier outputs, came from cache) for the real clips of `split` (centre crops)."""
    from vgs_cli.data.dataset import ShardDataset

    paths = _cache_path(root, split, file_sha256(root / "manifest.json"), clf_sha)
    if settings.use_cache:
        cached = _read_cache(paths)
        if cached is not None:
            return cached.pop("ids"), cached, True
    data = ShardDataset(root, split, fields=("mel", "id"), mel_crop="center")
    if len(data) == 0:
        raise VgsError(f"{root}: no clips with audio in the {split} split")
    ids: list[str] = []

    def mels():
        for i in range(len(data)):
            item = data[i]
            ids.append(item["id"])
            yield item["mel"]

    outs = extract(model, batched(mels(), settings.batch_size), device, progress)
    data.close()
    if settings.use_cache:
        _write_cache(paths, ids, outs)
    return ids, outs, False


def load_classifier(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    from vgs_cli.loading.models import load_model

    model, _cfg, ckpt = load_model(path, stage=CLASSIFIER_STAGES, device=device)
    return model, ckpt


def compute_metrics(settings: EvalSettings, real: dict[str, np.ndarray], fake: dict[str, np.ndarray],
                    real_ids: list[str], fake_ids: list[str | None]) -> dict[str, Any]:
    """The requested metrics from the two sets of classifier outputs."""
    out: dict[str, Any] = {}
    if "fid" in settings.metrics:
        out["fid"] = fid(real["features"], fake["features"])
    if "kid" in settings.metrics:
        # fakes first, as the reference's evaluate.py (input1 = fakes): the seeded subsets depend on the order
        out["kid_mean"], out["kid_std"] = kid(fake["features"], real["features"], settings.kid_subsets,
                                              settings.kid_subset_size, seed=settings.seed)
    if "isc" in settings.metrics:
        splits = settings.isc_splits
        if len(fake["logits_unbiased"]) < splits:
            raise VgsError(f"ISc with {splits} splits needs at least {splits} fakes, got "
                           f"{len(fake['logits_unbiased'])} (lower --isc-splits)")
        out["isc_mean"], out["isc_std"] = inception_score(fake["logits_unbiased"], splits, seed=settings.seed)
    if "mkl" in settings.metrics:
        keep = [i for i, rid in enumerate(fake_ids) if rid is not None]
        if not keep:
            raise VgsError("MKL: no fake file name matches a real clip id of the chosen split "
                           "(expected <clip_id>_sample_<k>.npy/.wav or <clip_id>.npy/.wav)")
        out["mkl"], out["mkl_pairs"] = mean_kl(real["logits"], real_ids, fake["logits"][keep],
                                               [fake_ids[i] for i in keep])
    return out


def evaluate(real: str, fake: str | Path, classifier: str | Path, settings: EvalSettings = EvalSettings(),
             device: str | None = None, json_out: str | Path | None = None,
             progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Score the fakes; returns the result dict (also written to `json_out` atomically when given).
    `progress(label, total)` may return a callback that receives the number of items done per batch."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    root, split = parse_real(real)
    split, manifest = pick_split(root, split)
    items = F.scan_fakes(fake, settings.fake_kind)  # fail on a bad fake folder before any heavy work
    F.check_wav_fakes(items)  # too short: refused; another sample rate: a note (they are resampled)
    clf_path = Path(classifier)
    model, ckpt = load_classifier(clf_path, dev)
    clf_sha = file_sha256(clf_path)

    n_real = int(manifest["splits"][split])
    cb = progress("real", n_real) if progress else None
    real_ids, real_outs, cached = real_outputs(root, split, model, clf_sha, settings, dev, cb)
    cb = progress("fake", len(items)) if progress else None
    fake_outs = extract(model, batched((F.load_fake_mel(it) for it in items), settings.batch_size), dev, cb)
    fake_ids = F.match_real_ids(items, real_ids, manifest.get("classes", ()))

    result = {
        "metrics": compute_metrics(settings, real_outs, fake_outs, real_ids, fake_ids),
        "n_real": len(real_ids), "n_fake": len(items),
        "n_fake_matched": sum(r is not None for r in fake_ids),
        "fake_kinds": {k: sum(it.kind == k for it in items) for k in ("mel", "wav")},
        "real": str(root), "split": split, "fake": str(fake),
        "classifier": str(clf_path), "classifier_stage": ckpt["stage"], "classifier_sha256": clf_sha,
        "real_cached": cached, "settings": {**asdict(settings), "metrics": list(settings.metrics)},
        "device": str(dev), "vgs_version": __version__,
    }
    if json_out is not None:
        write_json(json_out, result)
    return result
