"""The codebook as a neural audio codec: wav -> mel -> code grid -> mel -> wav.

    codes = encode_wav_file("in.wav", "codes.npy", codebook="runs/codebook")   # writes codes.npy + codes.json
    decode_codes_file("codes.npy", "out.wav")                                  # codebook found via codes.json

Any length: the mel (1 + S // 256 frames) is padded with silence to a multiple of the codebook's downsampling
(16 frames) and coded in windows of the codebook's training width (848 frames = 53 code columns), so every
window looks like what the model was trained on; the code grids are concatenated along time.
The codes file is a plain `np.save` array `int16/int32 [rows, columns]` (5 rows); its JSON sidecar records
the codebook's SHA-256 and path, the original length in samples and mel frames, and the bitrate.
Bitrate = tokens per second x log2(codebook size), e.g. 5 x 22050 / (256 x 16) = 26.9 tokens/s x 7 bits
= 188 bit/s for the VAS codebook.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vgs_cli import __version__
from vgs_cli.audio import spec
from vgs_cli.config.codebook import VQGANConfig
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError, VgsError
from vgs_cli.fsutil import atomic_path, file_sha256, write_json
from vgs_cli.generate.vocode import load_vocoder
from vgs_cli.loading.models import load_model, resolve_checkpoint
from vgs_cli.models.vqgan import VQGAN

FORMAT = "vgs-codes"


def load_codebook(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[VQGAN, Path, str]:
    """(model in eval mode, checkpoint file, its SHA-256) from a codebook checkpoint or run folder."""
    ckpt_path = resolve_checkpoint(path)
    model, _cfg, _ckpt = load_model(ckpt_path, stage="codebook", device=device)
    return model, ckpt_path, file_sha256(ckpt_path)


def tokens_per_second(cfg: VQGANConfig) -> float:
    """Code rows x code columns per second: rows * sample_rate / (hop * downsample)."""
    return cfg.grid[0] * SPEC.sample_rate / (SPEC.hop_length * cfg.downsample)


def bitrate(cfg: VQGANConfig) -> float:
    """Bits per second of the code stream (without entropy coding)."""
    return tokens_per_second(cfg) * math.log2(cfg.n_embed)


def _windows(total: int, width: int) -> list[tuple[int, int]]:
    width = width if width > 0 else total
    return [(s, min(s + width, total)) for s in range(0, total, width)]


@torch.no_grad()
def encode_mel(model: VQGAN, mel01: torch.Tensor, window: int | None = None) -> tuple[torch.Tensor, int]:
    """`Tensor[80, T]` on [0, 1] (any T >= 1) -> (codes `Tensor[rows, ceil(T / 16)]` int64, T).

    Padded at the end with silence (0 on the [0, 1] scale) to a multiple of 16 frames, coded in windows of
    `window` frames (default: the codebook's nominal width; 0 = all at once)."""
    cfg = model.cfg
    if mel01.dim() != 2 or mel01.shape[0] != cfg.n_mels or mel01.shape[1] < 1:
        raise DataError(f"expected a mel [{cfg.n_mels}, T], got {list(mel01.shape)}")
    frames = int(mel01.shape[1])
    padded_len = -(-frames // cfg.downsample) * cfg.downsample
    mel = torch.nn.functional.pad(mel01.float(), (0, padded_len - frames), value=0.0)
    x = spec.to_model_range(mel)[None, None].to(next(model.parameters()).device)
    parts = [model.encode(x[..., a:b])[1][0] for a, b in _windows(padded_len, cfg.frames if window is None else window)]
    return torch.cat(parts, dim=-1).cpu(), frames


@torch.no_grad()
def decode_codes(model: VQGAN, codes: torch.Tensor, frames: int | None = None, window: int | None = None) -> torch.Tensor:
    """`Tensor[rows, C]` codes -> mel `Tensor[80, frames or 16 C]` on [0, 1] (decoded in the same windows)."""
    cfg = model.cfg
    codes = torch.as_tensor(codes).long()
    if codes.dim() != 2 or codes.shape[0] != cfg.grid[0] or codes.shape[1] < 1:
        raise DataError(f"codes must be [{cfg.grid[0]}, C] for this codebook, got {list(codes.shape)}")
    if int(codes.min()) < 0 or int(codes.max()) >= cfg.n_embed:
        raise DataError(f"codes must lie in 0..{cfg.n_embed - 1} for this codebook "
                        f"(found {int(codes.min())}..{int(codes.max())})")
    device = next(model.parameters()).device
    cols = (cfg.frames if window is None else window) // cfg.downsample
    parts = [model.decode_indices(codes[None, :, a:b].to(device))[0, 0].float().cpu()
             for a, b in _windows(codes.shape[1], cols)]
    mel = spec.from_model_range(torch.cat(parts, dim=-1))
    return mel[:, :frames] if frames is not None else mel


def _codes_dtype(n_embed: int) -> type:
    return np.int16 if n_embed <= np.iinfo(np.int16).max + 1 else np.int32


def sidecar_path(codes_path: str | os.PathLike) -> Path:
    return Path(codes_path).with_suffix(".json")


def encode_wav_file(wav_path: str | os.PathLike, out_path: str | os.PathLike, codebook: str | os.PathLike,
                    device: str | torch.device = "cpu") -> dict[str, Any]:
    """Encode a sound file (any rate/channels/length; resampled to 22050 Hz mono) into `out_path` (.npy) and
    its `.json` sidecar; returns the sidecar's contents."""
    from vgs_cli.audio.io import read_wav

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".npy":
        raise VgsError(f"-o {out_path}: codes are written as a .npy file (plus a .json sidecar)")
    model, ckpt_path, sha = load_codebook(codebook, device)
    wav, _ = read_wav(wav_path, SPEC.sample_rate)
    if wav.size == 0:
        raise DataError(f"{wav_path}: the file holds no audio samples")
    codes, frames = encode_mel(model, spec.mel_spectrogram(torch.from_numpy(wav)))
    arr = codes.numpy().astype(_codes_dtype(model.cfg.n_embed))
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    meta = {
        "format": FORMAT, "vgs_version": __version__, "source": Path(wav_path).name,
        "codebook_sha256": sha, "codebook_path": str(ckpt_path.resolve()),
        "n_embed": model.cfg.n_embed, "shape": list(arr.shape), "dtype": str(arr.dtype),
        "sample_rate": SPEC.sample_rate, "num_samples": int(wav.shape[0]), "mel_frames": frames,
        "tokens_per_second": tokens_per_second(model.cfg), "bits_per_second": bitrate(model.cfg),
    }
    write_json(sidecar_path(out_path), meta)
    return meta


def read_codes(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """(codes int array, sidecar dict or {}) of a codes .npy file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"codes file not found: {path}")
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy codes file ({exc})") from None
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"{path}: expected an integer array [rows, columns], got {codes.dtype} {list(codes.shape)}")
    side = sidecar_path(path)
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{side}: unreadable codes sidecar ({exc})") from None
    return codes, meta


def _pick_codebook(codes_path: Path, meta: dict[str, Any], codebook: str | os.PathLike | None) -> str | Path:
    if codebook is not None:
        return codebook
    recorded = meta.get("codebook_path")
    if not recorded:
        raise VgsError(f"{codes_path}: no sidecar names its codebook; pass --codebook")
    if not Path(recorded).exists():
        raise VgsError(f"the codebook recorded in {sidecar_path(codes_path).name} is gone ({recorded}); pass --codebook")
    return recorded


def decode_codes_file(codes_path: str | os.PathLike, out_path: str | os.PathLike,
                      codebook: str | os.PathLike | None = None, vocoder: str = "griffinlim",
                      vocoder_ckpt: str | os.PathLike | None = None,
                      device: str | torch.device = "cpu") -> dict[str, Any]:
    """Decode a codes file to a wav (length from the sidecar when present). The codebook must be the one
    that encoded it (SHA-256 checked against the sidecar): other codes decode to noise, not an error."""
    from vgs_cli.audio.io import write_wav

    codes_path = Path(codes_path)
    codes, meta = read_codes(codes_path)
    model, _ckpt_path, sha = load_codebook(_pick_codebook(codes_path, meta, codebook), device)
    if meta.get("codebook_sha256") not in (None, sha):
        raise VgsError(f"{codes_path} was encoded with codebook sha256 {meta['codebook_sha256'][:16]}..., "
                       f"not with this one ({sha[:16]}...)")
    mel = decode_codes(model, torch.from_numpy(codes.astype(np.int64)), frames=meta.get("mel_frames"))
    voc = load_vocoder(vocoder, vocoder_ckpt, device)
    wav = voc.vocode(mel[None].to(device))[0].cpu().numpy()
    if meta.get("num_samples"):
        wav = spec.pad_or_trim(wav, int(meta["num_samples"]))
    write_wav(out_path, wav, SPEC.sample_rate)
    return {"codebook_sha256": sha, "num_samples": int(wav.shape[0]), "mel_frames": int(mel.shape[1]),
            "tokens_per_second": tokens_per_second(model.cfg), "bits_per_second": bitrate(model.cfg),
            "vocoder": voc.name}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def clip_relpath(clip_id: str) -> Path:
    """A clip id as a safe relative path (`/` keeps sub-folders, so `vgs eval` still pairs VAS ids)."""
    parts = [_UNSAFE.sub("_", p) for p in str(clip_id).split("/") if p not in ("", ".", "..")]
    if not parts:
        raise DataError(f"clip id {clip_id!r} gives no usable file name")
    return Path(*parts)


def reconstruct_split(data_dir: str | os.PathLike, split: str, codebook: str | os.PathLike,
                      out_dir: str | os.PathLike, *, vocoder: str | None = "griffinlim",
                      vocoder_ckpt: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                      batch_size: int = 8, progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Encode + decode every clip of a shard split (centre 848 frames): `<out>/<clip_id>.npy` mel
    `float32 [80, 848]` on [0, 1] and, unless `vocoder` is None, `<clip_id>.wav`. Returns a summary with the
    mean L1 on the [0, 1] scale between the input and reconstructed mels."""
    from vgs_cli.audio.io import write_wav
    from vgs_cli.data.dataset import ShardDataset

    if batch_size < 1:
        raise VgsError(f"--batch-size must be at least 1, got {batch_size}")
    model, _path, sha = load_codebook(codebook, device)
    data = ShardDataset(data_dir, split, fields=("mel", "id"), mel_crop="center")
    if len(data) == 0:
        raise DataError(f"{data_dir}: no clips with audio in the {split!r} split")
    voc = load_vocoder(vocoder, vocoder_ckpt, device) if vocoder else None
    out_dir = Path(out_dir)
    l1_sum = 0.0
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        mel = torch.stack([it["mel"] for it in items]).float()
        x = spec.to_model_range(mel)[:, None].to(device)
        with torch.no_grad():
            rec = spec.from_model_range(model(x)[0][:, 0].float()).cpu()
        l1_sum += float((rec - mel).abs().mean(dim=(1, 2)).sum())
        wavs = voc.vocode(rec.to(device)).cpu().numpy() if voc is not None else None
        for k, it in enumerate(items):
            rel = clip_relpath(it["id"])
            target = out_dir / rel.parent / f"{rel.name}.npy"
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                np.save(f, rec[k].numpy().astype(np.float32))
            if wavs is not None:
                write_wav(out_dir / rel.parent / f"{rel.name}.wav", wavs[k], SPEC.sample_rate)
        if progress is not None:
            progress(len(items))
    summary = {"clips": len(data), "split": split, "codebook_sha256": sha, "mel_l1": l1_sum / len(data),
               "vocoder": voc.name if voc is not None else None, "bits_per_second": bitrate(model.cfg)}
    write_json(out_dir / "reconstruct.json", summary)
    return summary
