"""`vgs reproduce NAME --data SHARDS`: one row of the paper's table, end to end.

    result = reproduce("vas_c_212feats_resnet50", Path("data/vas"), Path("reproduce/vas_c"), ReproduceOptions())

1. find or fetch the official transformer (+ its codebook), MelGAN and Melception (reproduce/models.py);
2. generate the protocol's samples with the reference's own sampler for the row (`sampler_for`: the registry
   records it per transformer with its source: temperature 1, sampling from the distribution, top-k 64 for
   VAS transformers on the VAS codebook and 512 otherwise; 10 samples per clip on VAS, 1 on VGGSound) for
   every clip of the evaluation split (VGGSound: test, 14,512 clips; VAS: valid, 768 clips, which the paper
   uses as its test set) with `generate.scale` (resumable, and shared among processes when run under torchrun);
3. score them against the real clips of that split with the eval driver (`metrics.evaluate`, Melception);
4. put FID / MKL beside the paper's numbers for the row (the registry has them) and write
   `OUT/reproduce.json`. `--limit N` (first N clips) or fewer samples make a partial run, which every
   output says it is: its numbers are not comparable with the paper's (FID/KID depend on the set sizes);
   `--top-k` or `--temperature` other than the row's sampler is said to be outside the paper's protocol.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vgs_cli import __version__
from vgs_cli.cache import cache_path
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import write_json
from vgs_cli.reproduce.models import OfficialModels, find_or_fetch, transformer_entry

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sampler:
    """How the reference sampled a row's evaluation set (recorded per transformer in the registry)."""

    top_k: int | None
    temperature: float
    samples_per_clip: int
    source: str  # where the reference says so


def sampler_for(entry_info: dict[str, Any]) -> Sampler:
    """The reference's sampler of a transformer row (`official_files.json`'s `sampler`)."""
    raw = entry_info.get("sampler")
    if not isinstance(raw, dict):
        raise VgsError("this transformer's registry row records no reference sampler (a vgs bug: report it)")
    return Sampler(raw.get("top_k"), float(raw.get("temperature", 1.0)), int(raw["samples_per_video"]),
                   str(raw.get("source", "")))


@dataclass(frozen=True)
class ReproduceOptions:
    models: Path = field(default_factory=lambda: cache_path("official"))  # found or fetched there (as vgs download)
    limit: int | None = None  # only the first N clips of the split (a partial run)
    samples: int | None = None  # default: the row's protocol (the reference's samples per clip)
    top_k: int | None = None  # default: the row's reference sampler; another value leaves the paper's protocol
    temperature: float | None = None  # likewise (the reference: 1.0)
    split: str | None = None  # default: the paper's evaluation split for the transformer's dataset
    batch_size: int = 8
    seed: int = 0
    device: str | None = None
    base_url: str | None = None  # a mirror of the official files


def protocol_split(entry_info: dict[str, Any]) -> str:
    """The paper evaluates VGGSound models on VGGSound's test split and VAS models on VAS's valid split."""
    return "valid" if str(entry_info.get("transformer_data", "")).lower() == "vas" else "test"


def paper_number(text: Any) -> float | None:
    """"11.5*" -> 11.5 (the registry keeps the paper's marks, such as `*`, in its strings)."""
    m = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)", str(text or ""))
    return float(m.group(1)) if m else None


def partial_reason(limit: int | None, n_clips: int, samples: int, protocol_samples: int) -> str | None:
    parts = []
    if limit is not None and limit < n_clips:
        parts.append(f"first {limit} of {n_clips} clips")
    if samples != protocol_samples:
        parts.append(f"{samples} sample(s) per clip instead of {protocol_samples}")
    return "; ".join(parts) or None


def run_sampler(reference: Sampler, opts: ReproduceOptions) -> dict[str, Any]:
    """What this run samples with, beside the reference's, and whether that is still the paper's protocol."""
    top_k = reference.top_k if opts.top_k is None else opts.top_k
    temperature = reference.temperature if opts.temperature is None else opts.temperature
    samples = reference.samples_per_clip if opts.samples is None else opts.samples
    changed = [f"{name} {mine} instead of the reference's {ref}"
               for name, mine, ref in (("top-k", top_k, reference.top_k),
                                       ("temperature", temperature, reference.temperature)) if mine != ref]
    return {"top_k": top_k, "temperature": temperature, "samples_per_clip": samples,
            "reference": asdict(reference), "paper_protocol": not changed,
            "note": ("; ".join(changed) + ": not the paper's sampling protocol") if changed else None}


def _check_data(data: Path, split: str) -> int:
    from vgs_cli.metrics.evaluate import pick_split

    _, manifest = pick_split(data, split)  # a missing folder or an empty split fails here, before any download
    return int(manifest["splits"][split])


def _generate(models: OfficialModels, data: Path, out: Path, opts: ReproduceOptions, sampler: dict[str, Any],
              split: str, worker, device, log: Log) -> dict[str, Any]:
    from vgs_cli.generate.engine import GenerateOptions, load_bundle, resolve_models
    from vgs_cli.generate.scale import generate_split

    paths = resolve_models(transformer=models.transformer, codebook=models.codebook, vocoder_ckpt=models.vocoder,
                           vocoder="melgan")
    bundle = load_bundle(paths, vocoder="melgan", device=str(device))
    gen = GenerateOptions(samples=sampler["samples_per_clip"], seed=opts.seed, top_k=sampler["top_k"],
                          temperature=sampler["temperature"])
    return generate_split(bundle, data, out, gen, split=split, batch_size=opts.batch_size, limit=opts.limit,
                          worker=worker, log=log)


def reproduce(name: str, data: Path, out: Path, opts: ReproduceOptions = ReproduceOptions(),
              log: Log = print) -> dict[str, Any] | None:
    """Run the row; returns the result (also in OUT/reproduce.json), or None on a torchrun rank other than 0."""
    from datetime import timedelta

    from vgs_cli import dist
    from vgs_cli.generate.workers import Worker

    entry = transformer_entry(name)
    split = opts.split or protocol_split(entry.info)
    n_clips = _check_data(data, split)
    if opts.samples is not None and opts.samples < 1:
        raise VgsError("--samples must be at least 1")
    if opts.top_k is not None and opts.top_k < 1:
        raise VgsError("--top-k must be at least 1")
    if opts.temperature is not None and opts.temperature <= 0:
        raise VgsError("--temperature must be > 0")
    sampler = run_sampler(sampler_for(entry.info), opts)
    log(f"sampling as the reference did for this row: top-k {sampler['reference']['top_k']}, temperature "
        f"{sampler['reference']['temperature']:g}, {sampler['reference']['samples_per_clip']} sample(s) per clip"
        + (f" ({sampler['note']})" if sampler["note"] else ""))
    gen_dir = out / "samples"
    env = dist.init_distributed(opts.device, timeout=timedelta(days=7))  # no-op without torchrun
    try:
        # rank 0 fetches; the others wait at the broadcast, then find its files
        models = find_or_fetch(name, opts.models, base_url=opts.base_url, log=log) if env.rank == 0 else None
        dist.broadcast_object(True)
        if models is None:
            models = find_or_fetch(name, opts.models, base_url=opts.base_url, log=lambda m: None)
        summary = _generate(models, data, gen_dir, opts, sampler, split, Worker(env.rank, env.world_size),
                            env.device, log)
    finally:
        if env.created:
            dist.destroy()
    if env.rank != 0:
        return None
    if not summary["complete"]:
        raise VgsError(f"{gen_dir}: {summary['missing']} clips lack samples after generation; run again to finish")
    return _score(models, data, split, gen_dir, out, opts, sampler, n_clips, summary, log)


def _score(models: OfficialModels, data: Path, split: str, gen_dir: Path, out: Path, opts: ReproduceOptions,
           sampler: dict[str, Any], n_clips: int, summary: dict[str, Any], log: Log) -> dict[str, Any]:
    from vgs_cli.metrics.evaluate import EvalSettings, evaluate

    log(f"scoring {gen_dir} against {data}:{split} with {models.melception}")
    # ISc's 10 splits need 10 fakes: a tiny partial run uses fewer (the protocol has thousands)
    samples = sampler["samples_per_clip"]
    settings = EvalSettings(isc_splits=min(10, summary["clips"] * samples))
    result = evaluate(f"{data}:{split}", gen_dir, models.melception, settings, device=opts.device)
    m = result["metrics"]
    info = models.entry.info
    paper = {"fid": info.get("paper_fid"), "mkl": info.get("paper_mkl")}
    rows = [{"metric": "FID", "ours": m.get("fid"), "paper": paper["fid"]},
            {"metric": "MKL", "ours": m.get("mkl"), "paper": paper["mkl"]},
            {"metric": "KID", "ours": m.get("kid_mean"), "std": m.get("kid_std"), "paper": None},
            {"metric": "ISc", "ours": m.get("isc_mean"), "std": m.get("isc_std"), "paper": None}]
    for row in rows:
        ref = paper_number(row["paper"])
        row["difference"] = None if ref is None or row["ours"] is None else row["ours"] - ref
    reason = partial_reason(opts.limit, n_clips, samples, sampler["reference"]["samples_per_clip"])
    report = {
        "name": models.entry.alias or models.entry.run, "run": models.entry.run, "setting": info.get("setting"),
        "condition": info.get("condition"), "features": info.get("features"),
        "partial": reason is not None, "partial_reason": reason,
        "split": split, "clips": summary["clips"], "clips_in_split": n_clips, "samples_per_clip": samples,
        "sampler": sampler, "paper_protocol": reason is None and sampler["paper_protocol"],
        "table": rows, "paper": paper, "metrics": m,
        "models": {k: str(getattr(models, k)) for k in ("transformer", "codebook", "vocoder", "melception")},
        "fetched": list(models.fetched), "samples_dir": str(gen_dir),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "eval": result, "vgs_version": __version__,
    }
    report["modern"] = _modern(data, split, gen_dir, opts, log)
    write_json(out / "reproduce.json", report)
    return report


def _modern(data: Path, split: str, gen_dir: Path, opts: ReproduceOptions, log: Log) -> dict[str, Any]:
    """Today's protocol (av-benchmark) for the row, with the metric networks whose weights are on this machine
    (none is downloaded: `vgs download --metrics` fetches them); the others are listed in `skipped`."""
    from dataclasses import replace

    from vgs_cli.metrics.av_eval import PROTOCOLS, AVSettings, evaluate_av, split_by_weights

    present, skipped = split_by_weights(PROTOCOLS["av-benchmark"])
    notes = []
    if not present:
        log(f"today's protocol not scored: no metric weights here ({', '.join(sorted(set(skipped.values())))}; "
            "`vgs download --metrics` fetches them)")
        return {"metrics": {}, "skipped": skipped, "notes": notes}
    settings = AVSettings(metrics=present)
    try:
        result = evaluate_av(f"{data}:{split}", gen_dir, settings, device=opts.device or "cpu")
    except VgsError as exc:  # most often: the shards record no source videos for IB-score / DeSync
        video = tuple(m for m in present if m not in ("ib", "desync"))
        if video == present or not video:
            raise
        notes.append(f"ib/desync left out: {exc}")
        skipped.update({m: "source videos" for m in present if m in ("ib", "desync")})
        result = evaluate_av(f"{data}:{split}", gen_dir, replace(settings, metrics=video), device=opts.device or "cpu")
    return {"metrics": result["metrics"], "skipped": skipped, "notes": notes,
            "weights_sha256": result["weights_sha256"], "audio_length_s": result["audio_length_s"]}
