"""Print the demo's closing table from the three `vgs eval --json` files and say whether the paper's
finding holds here: feature-conditioned generation has a clearly lower MKL than unconditioned generation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROWS = [("reconstruction", "(a) codebook reconstructions"), ("feats", "(b) generated, visual features"),
        ("none", "(c) generated, no condition")]


def _metric(res: dict, name: str) -> str:
    """`fid`/`mkl` are plain numbers; `kid`/`isc` come as `<name>_mean` and `<name>_std`."""
    m = res["metrics"]
    if name in m:
        return f"{m[name]:.3f}"
    if f"{name}_mean" in m:
        return f"{m[name + '_mean']:.3f} ± {m[name + '_std']:.3f}"
    return "-"


def _best_valid(run_dir: Path) -> dict:
    """The validation row of the best checkpoint (lowest valid loss) in a run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    valid = [r for r in rows if r.get("split") == "valid"]
    return min(valid, key=lambda r: r["loss"]) if valid else {}


AV_ROWS = [("FD_PaSST ↓", "fd_passt"), ("FD_PANNs ↓", "fd_panns"), ("FD_VGGish ↓", "fd_vggish"),
           ("KL_PANNs ↓", "kl_panns"), ("KL_PaSST ↓", "kl_passt"), ("IS_PANNs ↑", "is_panns"), ("IB ↑", "ib"),
           ("DeSync ↓", "desync")]


def _modern(console: Console, eval_dir: Path) -> None:
    """Today's protocol for (b) and (c) where the metric weights were present, else which files are missing."""
    runs = {key: eval_dir / f"{key}_av.json" for key in ("feats", "none")}
    results = {k: json.loads(p.read_text()) for k, p in runs.items() if p.is_file()}
    if not results:
        return
    skipped = sorted({f for r in results.values() for f in r.get("skipped", {}).values()})
    cols = [(label, key) for label, key in AV_ROWS if any(key in r["metrics"] or f"{key}_mean" in r["metrics"]
                                                          for r in results.values())]
    if cols:
        table = Table(title="today's protocol (av-benchmark networks, published weights)")
        table.add_column("what")
        for label, _ in cols:
            table.add_column(label, justify="right")
        for key, label in ROWS[1:]:
            if key in results:
                table.add_row(label, *[_metric(results[key], k) for _, k in cols])
        console.print(table)
    if skipped:
        console.print(f"today's protocol: not scored without the metric networks' weights ({', '.join(skipped)}); "
                      "`vgs download --metrics` fetches them (see README, Scoring in today's protocol)")


def main(eval_dir: str, video: str, wav: str, mp4: str, seconds: str, runs: str = "") -> int:
    console = Console(width=110)  # logs are not terminals: keep the table on one line per row
    results = {key: json.loads((Path(eval_dir) / f"{key}.json").read_text()) for key, _ in ROWS}
    table = Table(title="vgs demo: held-out synthetic clips, tiny models, demo Melception")
    for col in ("what", "FID ↓", "KID ↓", "ISc ↑", "MKL ↓", "real / fake items"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for key, label in ROWS:
        r = results[key]
        counts = f"{r.get('n_real', '?')} / {r.get('n_fake', '?')}"
        table.add_row(label, _metric(r, "fid"), _metric(r, "kid"), _metric(r, "isc"), _metric(r, "mkl"), counts)
    console.print(table)
    if runs:
        f, n = _best_valid(Path(runs) / "transformer_feats"), _best_valid(Path(runs) / "transformer_none")
        if f and n:
            console.print(f"transformer valid loss (nats/code, best step): visual features {f['loss']:.3f} vs none "
                          f"{n['loss']:.3f}; first time column {f['loss_first_step']:.3f} vs {n['loss_first_step']:.3f}")
    _modern(console, Path(eval_dir))
    cond, uncond = results["feats"]["metrics"]["mkl"], results["none"]["metrics"]["mkl"]
    verdict = "yes" if cond < uncond else "NO"
    console.print(f"conditioned MKL {cond:.3f} < unconditioned MKL {uncond:.3f}: {verdict} "
                  f"(the paper's finding: visual features make the sound match the video)")
    console.print(f"held-out video: {video}\ngenerated wav:  {wav}\nvideo + sound:  {mp4}\n"
                  f"demo time: {int(seconds) // 60} min {int(seconds) % 60} s")
    return 0 if cond < uncond else 1


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:7]))
