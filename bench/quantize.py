"""How much `--quantize int8` moves the paper-size GPT's next-token distributions, on codes of real clips.

Teacher-forced: the real VAS clips' mels (../shared/reference/vas/mels, 10 clips) go through a paper-size
VAS codebook to give 265-token code sequences; the GPT (VAS preset: 24 x 1024, vocab 128, 212 frames)
reads each sequence with its clip's real ResNet-50 features (../shared/reference/vas/resnet50, the centre
212 frames) once in fp32 and once with int8 Linear layers. Reported: the mean over all 265 positions and
clips of KL(fp32 || int8) in nats/token, its largest per-clip mean, and how often the greedy (argmax)
token agrees. No trained paper-size codebook or GPT exists here, so both are random-initialised (seed 0):
the numbers show the quantization error of these weight shapes/statistics, not of trained weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(os.environ.get("VGS_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))
CHUNK = 2  # clips per forward pass (memory: [2, 477, 4096] activations)


def real_codes_and_feats(vq, reference: Path = REFERENCE) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(codes `Tensor[N, 265]` in GPT order, features `Tensor[N, 212, 2048]`, clip names) of the real clips."""
    from vgs_cli.audio.spec import crop_frames, to_model_range
    from vgs_cli.data.condition import centre_start, condition_frames
    from vgs_cli.data.safe_pickle import load_array
    from vgs_cli.models.gpt import to_sequence

    codes, feats, names = [], [], []
    for mel_path in sorted((reference / "vas" / "mels").glob("*/*_mel.npy")):
        cls, clip = mel_path.parent.name, mel_path.name.removesuffix("_mel.npy")
        feat_path = reference / "vas" / "resnet50" / cls / f"{clip}.pkl"
        if not feat_path.is_file():
            continue
        mel = to_model_range(crop_frames(torch.from_numpy(np.load(mel_path)).float(), 848))
        with torch.inference_mode():
            _, idx, _ = vq.encode(mel[None, None])
        codes.append(to_sequence(idx)[0])
        f = load_array(feat_path).astype(np.float32)
        feats.append(torch.from_numpy(condition_frames(f, 212, 212, centre_start(len(f), 212))))
        names.append(f"{cls}/{clip}")
    return torch.stack(codes), torch.stack(feats), names


@torch.inference_mode()
def compare(reference_gpt, other_gpt, codes: torch.Tensor, feats: torch.Tensor) -> dict[str, float]:
    """KL(reference || other) of the next-token distributions at every position, teacher-forced.

    `codes` `Tensor[N, T]`, `feats` `Tensor[N, F, D]` -> {"kl": mean nats/token, "kl_max_clip": the largest
    per-clip mean, "agree": fraction of positions whose argmax tokens agree}."""
    kls, agree = [], []
    for i in range(0, len(codes), CHUNK):
        c, f = codes[i:i + CHUNK], feats[i:i + CHUNK]
        logp = torch.log_softmax(reference_gpt(c[:, :-1], f).float(), dim=-1)  # [n, T, V]
        logq = torch.log_softmax(other_gpt(c[:, :-1], f).float(), dim=-1)
        kls.append((logp.exp() * (logp - logq)).sum(-1))  # [n, T]
        agree.append(logp.argmax(-1) == logq.argmax(-1))
    kl, same = torch.cat(kls), torch.cat(agree)
    return {"kl": kl.mean().item(), "kl_max_clip": kl.mean(1).max().item(), "agree": same.float().mean().item()}


def rows() -> list[tuple[str, float, str]]:
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.loading.quantize import quantize_gpt
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.vqgan import VQGAN

    if not (REFERENCE / "vas" / "mels").is_dir():
        return [("int8 quality: ../shared/reference absent, skipped", float("nan"), "")]
    torch.manual_seed(0)
    vq = VQGAN(CB["vas"].model).eval()
    codes, feats, names = real_codes_and_feats(vq)
    del vq
    gpt = GPT(TR["vas"].model).eval()
    q = quantize_gpt(gpt, "int8")
    r = compare(gpt, q, codes, feats)
    return [
        (f"int8 vs fp32, paper-size VAS GPT (random init), {len(names)} real clips x 265 codes: "
         "mean KL(fp32 || int8)", r["kl"], "nats/token"),
        ("int8 vs fp32: largest per-clip mean KL", r["kl_max_clip"], "nats/token"),
        ("int8 vs fp32: greedy (argmax) token agreement", 100 * r["agree"], "%"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(*row, sep="\t")
