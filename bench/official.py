"""Official-file import speed: seconds for `vgs import specvqgan` on paper-size files written here.

A paper-size VAS codebook `.ckpt` (71.9M inference parameters + the 17.5M-parameter training loss, Lightning
1.2 wrapping, no optimiser state) and the MelGAN generator (4.27M). Values are zeros: speed does not depend
on them. The import time covers the restricted load (scan + weights_only, memory-mapped), size inference,
the key/shape check against a model built on the meta device, and the atomic write of the vgs checkpoint.
The first meta-device build in a process also pays a one-off ~3 s of torch start-up, reported separately.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _zeros_like_layout(layout) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in layout.items()}


def rows() -> list[tuple[str, float, str]]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    import _official_fixtures as fx

    from vgs_cli.official.importer import import_specvqgan

    out: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        codebook = _zeros_like_layout(fx.codebook_layout(None, full=False))  # also warms the meta device up
        out.append(("first meta-device model build (one-off per process)", time.perf_counter() - t0, "s"))
        del codebook
        files = {
            "codebook (paper size, Lightning .ckpt)": fx.save_lightning(
                root / "cb" / "epoch_259.ckpt", _zeros_like_layout(fx.codebook_layout(None, full=True))),
            "MelGAN generator (paper size)": fx.save_melgan(root / "voc", _zeros_like_layout(fx.melgan_layout(None))),
        }
        for name, path in files.items():
            size_mb = path.stat().st_size / 1e6
            t0 = time.perf_counter()
            import_specvqgan(path, root / "out" / path.parent.name)
            seconds = time.perf_counter() - t0
            out += [(f"import {name}", seconds, "s"), (f"import {name} throughput", size_mb / seconds, "MB/s")]
    return out


if __name__ == "__main__":
    for row in rows():
        print(*row)
