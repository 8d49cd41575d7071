"""`make demo`'s closing summary (scripts/demo_summary.py): the 2021 table, today's protocol where the metric
weights were present (`vgs eval --skip-missing` JSONs), the missing files named otherwise, and the verdict."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo_summary.py"


def _summary():
    spec = importlib.util.spec_from_file_location("demo_summary", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(folder: Path, name: str, obj: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps(obj))


def _spec(mkl: float) -> dict:
    return {"metrics": {"fid": 20.0, "kid_mean": 0.2, "kid_std": 0.01, "isc_mean": 1.5, "isc_std": 0.2, "mkl": mkl},
            "n_real": 30, "n_fake": 60}


def test_summary_prints_todays_protocol_where_weights_were_present(tmp_path, capsys):
    for name, mkl in (("reconstruction", 1.0), ("feats", 2.5), ("none", 4.0)):
        _write(tmp_path, name, _spec(mkl))
    skipped = {"fd_passt": "passt-s-f128-p16-s10-ap.476-swa.pt", "ib": "imagebind_huge.pth"}
    _write(tmp_path, "feats_av", {"metrics": {"fd_vggish": 3.25, "kl_panns": 1.125}, "skipped": skipped})
    _write(tmp_path, "none_av", {"metrics": {"fd_vggish": 4.5, "kl_panns": 1.75}, "skipped": skipped})
    assert _summary().main(str(tmp_path), "v.mp4", "e.wav", "e.mp4", "125") == 0
    out = capsys.readouterr().out
    assert "today's protocol" in out and "FD_VGGish" in out and "3.250" in out and "1.750" in out
    assert "FD_PaSST" not in out  # skipped: no column
    assert "imagebind_huge.pth" in out and "passt-s-f128-p16-s10-ap.476-swa.pt" in out
    assert "vgs download --metrics" in out and "conditioned MKL 2.500 < unconditioned MKL 4.000: yes" in out


def test_summary_without_any_metric_weights_says_which_files_are_missing(tmp_path, capsys):
    for name, mkl in (("reconstruction", 1.0), ("feats", 5.0), ("none", 4.0)):
        _write(tmp_path, name, _spec(mkl))
    for name in ("feats_av", "none_av"):
        _write(tmp_path, name, {"metrics": {}, "skipped": {"desync": "synchformer_state_dict.pth"}})
    assert _summary().main(str(tmp_path), "v.mp4", "e.wav", "e.mp4", "61") == 1  # the ordering failed
    out = capsys.readouterr().out
    assert "not scored without the metric networks' weights (synchformer_state_dict.pth)" in out
    assert "(av-benchmark networks" not in out and ": NO" in out and "demo time: 1 min 1 s" in out
