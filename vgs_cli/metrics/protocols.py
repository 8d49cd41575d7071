"""One `vgs eval` run over both protocols: the 2021 Melception metrics (`evaluate.evaluate`) and today's
av-benchmark ones (`av_eval.evaluate_av`), merged into one result, JSON and per-file CSV.

Per-file CSV: one row per (clip, sample) with the per-pair metrics (KL_PANNs, KL_PaSST, IB, DeSync); a clip
with several samples also gets a row `sample = "mean"` holding the mean over its samples and, per metric, the
half-width of the 95% Student-t interval over them (`<metric>_ci95`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from vgs_cli.errors import VgsError
from vgs_cli.fsutil import atomic_path, write_json
from vgs_cli.metrics.av_eval import (
    AV_METRICS,
    PAIR_METRICS,
    SPEC_METRICS,
    AVSettings,
    evaluate_av,
    split_by_weights,
)
from vgs_cli.metrics.av_formulas import mean_ci95


def per_file_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(CSV columns, rows): the per-sample rows, then per clip with several samples its mean and interval."""
    cols = [m for m in PAIR_METRICS if any(m in r for r in rows)]
    out: list[dict[str, Any]] = []
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_clip.setdefault(r["clip"], []).append(r)
    for clip, members in by_clip.items():
        out += [{"clip": clip, "sample": r["sample"], **{m: r[m] for m in cols}} for r in members]
        if len(members) > 1:
            agg: dict[str, Any] = {"clip": clip, "sample": "mean"}
            for m in cols:
                agg[m], agg[f"{m}_ci95"] = mean_ci95([r[m] for r in members])
            out.append(agg)
    header = ["clip", "sample", *cols, *(f"{m}_ci95" for m in cols)]
    return header, out


def write_per_file(path: str | Path, rows: list[dict[str, Any]]) -> None:
    header, out = per_file_rows(rows)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, restval="")
        writer.writeheader()
        for r in out:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def evaluate_protocols(real: str, fake: str | Path, metrics: tuple[str, ...], *, classifier: Path | None,
                       spec_settings: Any, av_settings: AVSettings, device: str | None,
                       weights_dir: Path | None = None, videos: Path | None = None,
                       json_out: str | Path | None = None, per_file: str | Path | None = None,
                       progress: Callable[[str, int], Any] | None = None,
                       skip_missing: bool = False) -> dict[str, Any]:
    """Both protocols' metrics named in `metrics`; writes `json_out` / `per_file` (atomically) when given.
    `skip_missing`: leave out the av-benchmark metrics whose weights are not on this machine (no download);
    `result["skipped"]` maps each to the file it lacks."""
    skipped: dict[str, str] = {}
    if skip_missing:
        metrics, skipped = split_by_weights(metrics, weights_dir)
    spec = tuple(m for m in metrics if m in SPEC_METRICS)
    av = tuple(m for m in metrics if m in AV_METRICS)
    if spec and classifier is None:
        raise VgsError(f"{', '.join(spec)} need --classifier (a Melception checkpoint); for today's metrics "
                       "alone use --protocol av-benchmark")
    if per_file is not None and not skipped and not any(m in PAIR_METRICS for m in av):
        raise VgsError("--per-file lists per-clip metrics: ask for kl_panns, kl_passt, ib or desync")
    result: dict[str, Any] = {"metrics": {}}
    if spec:
        from dataclasses import replace

        from vgs_cli.metrics.evaluate import evaluate

        result = evaluate(real, fake, classifier, replace(spec_settings, metrics=spec), device=device,
                          progress=progress)
    if av:
        from dataclasses import replace

        dev = device or "cpu"  # the metric networks run on the CPU unless --device says otherwise
        out = evaluate_av(real, fake, replace(av_settings, metrics=av), device=dev, weights_dir=weights_dir,
                          videos=videos, progress=progress)
        merged = {**result.get("metrics", {}), **out.pop("metrics")}
        n_fake = result.get("n_fake")
        result = {**out, **result, "metrics": merged, "av_benchmark": {
            k: out[k] for k in ("n_real", "n_fake", "n_fake_matched", "weights_sha256", "audio_length_s")}}
        if n_fake is None:
            result.update({k: out[k] for k in ("n_real", "n_fake", "n_fake_matched", "real", "fake")})
        result["av_device"] = dev
    result["requested"] = list(metrics) + list(skipped)
    if skipped:
        result["skipped"] = skipped
    if json_out is not None:
        write_json(json_out, result)
    if per_file is not None:
        write_per_file(per_file, result.get("per_file", []))
    return result
