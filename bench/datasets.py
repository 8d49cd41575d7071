"""Dataset plumbing speed: safe unpickling of official features, official-feature ingestion, local HTTP download.

rows() -> [(name, value, unit)]; about 10 s on 2 cores. Disk-bound numbers depend on the machine's disk.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.timing import seconds


def _best(fn, repeat: int = 5) -> float:
    return seconds(fn, repeats=repeat, warmup=False, best=True)


def _unpickle_rows() -> list[tuple[str, float, str]]:
    from vgs_cli.data.safe_pickle import safe_loads

    blob = pickle.dumps(np.random.default_rng(0).standard_normal((215, 2048)).astype(np.float32), protocol=4)
    safe = _best(lambda: [safe_loads(blob) for _ in range(50)]) / 50
    stock = _best(lambda: [pickle.loads(blob) for _ in range(50)]) / 50
    return [("safe unpickle of one 215x2048 feature pickle", safe * 1e3, "ms"),
            ("  stock pickle.loads, same file", stock * 1e3, "ms")]


def _official_tree(root: Path, n: int) -> None:
    from vgs_cli.prepare.sources import load_split

    rng = np.random.default_rng(0)
    for name in load_split("vas_train")[:n]:
        cls, vid = name.split("/")
        for folder, dim in (("feature_resnet50_dim2048_21.5fps", 2048), ("feature_rgb_bninception_dim1024_21.5fps", 1024),
                            ("feature_flow_bninception_dim1024_21.5fps", 1024)):
            (root / cls / folder).mkdir(parents=True, exist_ok=True)
            (root / cls / folder / f"{vid}.pkl").write_bytes(pickle.dumps(rng.standard_normal((215, dim)).astype(np.float32)))
        (root / cls / "melspec_10s_22050hz").mkdir(parents=True, exist_ok=True)
        np.save(root / cls / "melspec_10s_22050hz" / f"{vid}_mel.npy", rng.uniform(0, 1, (80, 860)).astype(np.float32))


def _ingest_rows(tmp: Path) -> list[tuple[str, float, str]]:
    from vgs_cli.prepare.sources.ingest import ingest_vas

    n = 64
    _official_tree(tmp / "src", n)
    t0 = time.perf_counter()
    ingest_vas(tmp / "src", tmp / "out", num_shards=1)
    dt = time.perf_counter() - t0
    return [(f"ingest official VAS features ({n} clips, mel + resnet50 + bninception)", n / dt, "clips/s")]


def _download_rows(tmp: Path) -> list[tuple[str, float, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _http_server import serve

    from vgs_cli.data.download import download

    data = os.urandom(64 << 20)
    md5 = hashlib.md5(data).hexdigest()
    with serve({"/f.bin": data}) as srv:
        t0 = time.perf_counter()
        download(srv.url("/f.bin"), tmp / "f.bin", md5=md5)
        dt = time.perf_counter() - t0
    return [("HTTP download from 127.0.0.1 incl. md5+sha256 check (64 MiB)", 64 / dt, "MiB/s")]


def rows() -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [*_unpickle_rows(), *_ingest_rows(Path(tmp)), *_download_rows(Path(tmp))]


if __name__ == "__main__":
    for row in rows():
        print(row)
