"""The published SpecVQGAN files (vendored `resources/official_files.json`): names, aliases, URLs, MD5s.

Every entry has `run` (its public name: a run folder like `2021-06-06T19-42-53_vas_codebook`, or a file name
like `melception-21-05-10T09-28-40.pt`), `url`, `md5` (null for the MelGAN files, which are published
without one), `kind` and, for transformers, the paper's setting / condition / features / FID / MKL.

Short aliases: `vas_codebook`, `vggsound_codebook`, `melception`, `vggishish`, `melgan`, `stats`, and per
transformer `<dataset>_<setting>_<condition>[_<features>]` (e.g. `vas_c_212feats_resnet50`) when unique.
URLs are the published ones unless a base URL is given (`--base-url` / VGS_OFFICIAL_BASE_URL): then the
path below `specvqgan_public/` is appended to it (a mirror, or the tests' local server).
"""

from __future__ import annotations

import difflib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from vgs_cli.errors import VgsError

BASE_ENV = "VGS_OFFICIAL_BASE_URL"
PUBLIC_ROOT = "specvqgan_public/"
FIXED_ALIASES = {
    "2021-06-06T19-42-53_vas_codebook": "vas_codebook",
    "2021-05-19T22-16-54_vggsound_codebook": "vggsound_codebook",
    "melception-21-05-10T09-28-40.pt": "melception",
    "vggishish16.pt": "vggishish",
    "melgan_netG.pt": "melgan",
    "train_means_stds_melspec_10s_22050hz.txt": "stats",
}
_CONDITIONS = {"no feats": "nofeats", "1 feat": "1feat", "5 feats": "5feats", "212 feats": "212feats",
               "class": "class"}
_FEATURES = {"resnet50": "resnet50", "bn inception": "bninception"}


@dataclass(frozen=True)
class Entry:
    run: str
    url: str
    md5: str | None
    kind: str
    info: dict[str, Any] = field(default_factory=dict)  # the remaining fields (setting, condition, paper_fid...)
    alias: str | None = None

    @property
    def rel_path(self) -> str:
        """The URL's path below the public root (`models/<run>.tar.gz`, `vggishish16.pt`, ...)."""
        i = self.url.find(PUBLIC_ROOT)
        return self.url[i + len(PUBLIC_ROOT):] if i >= 0 else self.url.rsplit("/", 1)[-1]

    @property
    def filename(self) -> str:
        return self.rel_path.rsplit("/", 1)[-1]

    @property
    def is_archive(self) -> bool:
        return self.filename.endswith((".tar.gz", ".tgz", ".tar"))

    def url_from(self, base_url: str | None = None) -> str:
        base = base_url or os.environ.get(BASE_ENV) or ""
        return f"{base.rstrip('/')}/{self.rel_path}" if base else self.url


def _transformer_alias(e: dict[str, Any]) -> str | None:
    parts = e["run"].split("_")
    cond = _CONDITIONS.get(str(e.get("condition") or "").lower())
    if len(parts) < 2 or cond is None or not e.get("setting"):
        return None
    feats = _FEATURES.get(str(e.get("features") or "").lower(), "")
    return "_".join(p for p in (parts[1], str(e["setting"]), cond, feats) if p)


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    raw = json.loads(resources.files("vgs_cli.resources").joinpath("official_files.json").read_text())
    proposed = {e["run"]: FIXED_ALIASES.get(e["run"]) or (_transformer_alias(e) if e["kind"] == "transformer" else None)
                for e in raw}
    counts = Counter(a for a in proposed.values() if a)
    out = []
    for e in raw:
        alias = proposed[e["run"]]
        info = {k: v for k, v in e.items() if k not in ("run", "url", "md5", "kind")}
        out.append(Entry(e["run"], e["url"], e.get("md5"), e["kind"], info, alias if alias and counts[alias] == 1 else None))
    return tuple(out)


def find(name: str) -> Entry:
    """The entry called `name` (run name, file name, alias; `.tar.gz` optional); else a VgsError with hints."""
    key = name.strip().removesuffix(".tar.gz")
    for e in entries():
        if key in (e.run, e.alias, e.filename.removesuffix(".tar.gz")):
            return e
    names = [e.alias or e.run for e in entries()] + [e.run for e in entries()]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise VgsError(f"unknown official file {name!r}{hint}; `vgs download --list` shows them all")


def by_run(run: str) -> Entry | None:
    return next((e for e in entries() if e.run == run), None)


def stats_entry() -> Entry:
    return find("stats")


def listing() -> list[dict[str, str]]:
    """Rows for `vgs download --list`."""
    rows = []
    for e in entries():
        i = e.info
        detail = ""
        if e.kind == "transformer":
            detail = (f"setting {i.get('setting')}: {i.get('transformer_data')} transformer, {i.get('codebook')} "
                      f"codebook, {i.get('condition')}{', ' + i['features'] if i.get('features') else ''}; "
                      f"paper FID {i.get('paper_fid')} MKL {i.get('paper_mkl')}")
        elif e.kind == "codebook":
            detail = f"{i.get('trained_on')} codebook; paper FID {i.get('paper_fid')} MKL {i.get('paper_mkl')}"
        elif e.md5 is None:
            detail = "no published MD5"
        rows.append({"name": e.run, "alias": e.alias or "", "kind": e.kind, "detail": detail})
    return rows
