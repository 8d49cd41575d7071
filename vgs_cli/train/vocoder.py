"""`vgs train vocoder`: MelGAN on random 8192-sample segments of the stored waveforms.

One step = discriminator (hinge) update on real vs detached fake audio, THEN generator update with the hinge
adversarial term + 10 x feature matching (+ the optional mel-L1 term, off in the paper presets). Validation
vocodes whole stored mels and measures the L1 between the input mel and the mel of the vocoded audio.

Alignment: the stored mel's frame i is centred on sample i*256 (centred STFT, reflect padding), and the
generator's frame i drives samples [i*256, (i+1)*256). A training segment starting at sample s therefore
needs the frames centred on s, s+256, ..., s+31*256 computed exactly as the full-clip STFT would: we reflect-pad
the whole clip like the full-clip STFT, cut the segment with n_fft/2 context on each side and keep only the
frames whose windows lie inside that context (`segment_with_mel`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vgs_cli.audio import spec
from vgs_cli.audio.io import write_wav
from vgs_cli.audio.plot import save_mel_png
from vgs_cli.config.spec import SPEC
from vgs_cli.config.vocoder import PRESETS, VocoderConfig
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.models.melgan import Generator, MultiScaleDiscriminator
from vgs_cli.train.holdout import ValidSplit
from vgs_cli.train.losses import gan_optimizers

__all__ = ["PRESETS", "CONFIG_CLASS", "make_task", "VocoderTask", "SegmentDataset", "segment_with_mel"]

CONFIG_CLASS = VocoderConfig

# Validation compares the centre of the clip: 860 stored frames -> the 848 the other models see. The edge frames
# of the vocoded audio's mel see padding where the original saw real audio, so they are left out.
VALID_MARGIN = (SPEC.stored_frames - SPEC.model_frames) // 2


# ----------------------------------------------------------------------------------------------- data
def segment_with_mel(wav: torch.Tensor, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`wav: Tensor[S]` -> (`Tensor[length]` = wav[start:start+length], `Tensor[80, length // 256]` mel).

    The mel frames equal frames start/256 ... of `spec.mel_spectrogram(wav)` when `start` is a multiple of the
    hop (tested); for other starts they are the same computation shifted, centred on start + i*256."""
    half, hop = SPEC.n_fft // 2, SPEC.hop_length
    assert half % hop == 0 and length % hop == 0 and 0 <= start <= wav.shape[-1] - length
    padded = F.pad(wav.reshape(1, 1, -1).to(torch.float64), (half, half), mode=SPEC.pad_mode).reshape(-1)
    context = padded[start : start + length + 2 * half]  # wav[start - half : start + length + half]
    mel = spec.mel_spectrogram(context)  # frame m is centred on wav sample start - half + m*hop
    skip = half // hop
    return wav[start : start + length], mel[:, skip : skip + length // hop]


class SegmentDataset(Dataset):
    """Random training segments of whole clips: item -> {"wav": Tensor[L], "mel": Tensor[80, L // 256]}.

    `base[i]["wav"]` is a `Tensor[S]` (float on [-1, 1], or int16); clips shorter than L are zero-padded.
    One random segment per clip per epoch, drawn from torch's global RNG (seeded per DataLoader worker)."""

    def __init__(self, base: Dataset, segment_samples: int):
        self.base = base
        self.length = segment_samples

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        wav = torch.as_tensor(self.base[index]["wav"])
        wav = wav.float() / 32767.0 if not wav.is_floating_point() else wav.float()  # int16 as shards store it
        if wav.shape[-1] < self.length:
            wav = F.pad(wav, (0, self.length - wav.shape[-1]))
        start = int(torch.randint(0, wav.shape[-1] - self.length + 1, ()))
        seg, mel = segment_with_mel(wav, start, self.length)
        return {"wav": seg, "mel": mel}


# ----------------------------------------------------------------------------------------------- losses
def hinge_d_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of mean(relu(1 - D(x))) + mean(relu(1 + D(G(s))))."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits, strict=True))


def hinge_g_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of -mean(D(G(s)))."""
    return sum(-f.mean() for f in fake_logits)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator features (logits excluded), weighted 4/(layers) per layer and 1/scales per
    scale as MelGAN does. Real features must already be detached."""
    n_feats = len(real[0]) - 1
    wt = (4.0 / n_feats) / len(real)
    pairs = [(r, f) for rs, fs in zip(real, fake, strict=True) for r, f in zip(rs[:-1], fs[:-1], strict=True)]
    return sum(wt * F.l1_loss(f, r) for r, f in pairs)


def segment_mel_l1(fake: torch.Tensor, mel01: torch.Tensor) -> torch.Tensor:
    """Mel L1 on the [0,1] scale between generated segments `Tensor[B, 1, L]` and their input mels
    `Tensor[B, 80, L/256]`, over the frames whose STFT windows lie inside the segment (differentiable)."""
    skip = SPEC.n_fft // 2 // SPEC.hop_length
    frames = mel01.shape[-1]
    fake_mel = spec.mel_spectrogram(fake.squeeze(1).float())
    return F.l1_loss(fake_mel[..., skip : frames - skip + 1], mel01[..., skip : frames - skip + 1].float())


def vocoded_mel_l1(mel01: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Per-clip L1 `Tensor[B]` between input mels `Tensor[B, 80, T]` and the mels of their vocoded audio
    `Tensor[B, T*256]`, on the centre T - 12 frames (860 -> 848)."""
    frames = mel01.shape[-1]
    if frames <= 2 * VALID_MARGIN:
        raise VgsError(f"validation needs more than {2 * VALID_MARGIN} mel frames, got {frames}")
    rebuilt = spec.mel_spectrogram(audio.float())[..., :frames].to(mel01.device)
    keep = slice(VALID_MARGIN, frames - VALID_MARGIN)
    return (rebuilt[..., keep] - mel01[..., keep].float()).abs().mean(dim=(-2, -1))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into `module`'s parameters (they still flow through it to its input)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


# ----------------------------------------------------------------------------------------------- task
class VocoderTask:
    """The vocoder stage for the shared trainer (`train/task.py`). Models: "model" (Generator), "disc"."""

    stage = "vocoder"
    best_metric = "mel_l1"
    best_mode = "min"
    find_unused_parameters = False

    def __init__(self, config: VocoderConfig, data_dir: Path | None,
                 train_data: Dataset | None = None, valid_data: Dataset | None = None):
        """`train_data` / `valid_data` replace the shard datasets (tests, custom data): items with "wav"
        `Tensor[S]` (train) and "mel" `Tensor[80, T]` (valid; "id" optional)."""
        self.config = config
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._train_data = train_data
        self._valid_data = valid_data
        self._splits: ValidSplit | None = None

    # -- models and optimisers
    def build_models(self) -> dict[str, nn.Module]:
        return {"model": Generator(self.config.model), "disc": MultiScaleDiscriminator(self.config.disc)}

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return gan_optimizers(models, self.config.train)

    # -- data
    def train_dataset(self) -> Dataset:
        if self._train_data is None:
            self._train_data = self._shards("train", fields=("wav",))
            if self._train_data is None:
                raise VgsError(f"{self.data_dir}: no clips in the train split")
        return SegmentDataset(self._train_data, self.config.segment_samples)

    def valid_dataset(self) -> Dataset | None:
        if self._valid_data is None:
            self._valid_data = self._shards("valid", fields=("mel", "id"))
        return self._valid_data

    def _shards(self, split: str, fields: tuple[str, ...]) -> Dataset | None:
        # Imported late: the task (and its tests with in-memory data) must not need the shard reader.
        from vgs_cli.data import shards
        from vgs_cli.data.dataset import ShardDataset

        if self.data_dir is None:
            raise VgsError("the vocoder task needs a data folder (--data)")
        if shards.read_manifest(self.data_dir).get("settings", {}).get("waveforms") is False:  # official features
            raise VgsError(f"{self.data_dir} has mels but no waveforms (made from precomputed features); "
                           "prepare the dataset from videos to train the vocoder")
        data_dir = self.data_dir
        self._splits = self._splits or ValidSplit(data_dir)  # no valid split in the data: train/holdout.py
        data = self._splits.dataset(split, lambda s: ShardDataset(data_dir, s, fields=fields, mel_crop=None))
        return data if data is not None and len(data) > 0 else None

    # -- steps
    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        """`batch`: "wav" `Tensor[B, L]`, "mel" `Tensor[B, 80, L/256]`. Discriminator step, then generator."""
        gen, disc = models["model"], models["disc"]
        wav = batch["wav"].to(ctx.device).unsqueeze(1)
        mel = batch["mel"].to(ctx.device)
        with ctx.autocast():
            fake = gen(mel)
            # One discriminator call on real+fake keeps DDP to one forward per backward.
            outs = disc(torch.cat([wav, fake.detach()]))
            n = wav.shape[0]
            real = [[f[:n].detach() for f in scale] for scale in outs]
            loss_d = hinge_d_loss([s[-1][:n] for s in outs], [s[-1][n:] for s in outs])
        ctx.backward("disc", loss_d)

        bare_disc = ctx.unwrap(disc)
        # Through the bare module (D's DDP reducer must not wait for gradients this backward never gives it)
        # and with D's weights frozen: no D weight gradients are computed or left behind for the next D step.
        with ctx.autocast(), frozen(bare_disc):
            fake_outs = bare_disc(fake)
            adv = hinge_g_loss([s[-1] for s in fake_outs])
            fm = feature_matching_loss(real, fake_outs)
        loss_g = adv.float() + self.config.feat_match_weight * fm.float()
        logs = {"loss_d": loss_d.item(), "loss_g_adv": adv.item(), "loss_fm": fm.item()}
        if self.config.mel_l1_weight > 0:
            mel_l1 = segment_mel_l1(fake, mel)  # float64 STFT, outside autocast
            loss_g = loss_g + self.config.mel_l1_weight * mel_l1
            logs["mel_l1"] = mel_l1.item()
        ctx.backward("gen", loss_g)
        logs["loss_g"] = loss_g.item()
        return logs

    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """`batch["mel"]`: stored mels `Tensor[B, 80, T]` -> {"mel_l1": Tensor[B]} of the vocoded audio."""
        gen = models["model"]
        device = next(gen.parameters()).device
        mel = batch["mel"].to(device).float()
        # Whole 10 s clips: chunks of 8 bound the last stage's activations (~30 MB per clip per tensor).
        audio = torch.cat([gen(chunk).squeeze(1) for chunk in mel.split(8)])
        return {"mel_l1": vocoded_mel_l1(mel, audio)}

    def summarize_eval(self, collected: dict[str, torch.Tensor]) -> dict[str, float]:
        return {}

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        """Write the first `valid_samples` valid clips as wav + a PNG (input mel over vocoded mel)."""
        data = self.valid_dataset()
        if data is None or self.config.valid_samples == 0:
            return {}
        gen = models["model"]
        device = next(gen.parameters()).device
        out_dir = Path(run_dir) / "samples"
        was_training = gen.training
        gen.eval()
        with torch.no_grad():
            for i in range(min(self.config.valid_samples, len(data))):  # type: ignore[arg-type]
                item = data[i]
                mel = torch.as_tensor(item["mel"]).float()
                audio = gen(mel[None].to(device))[0, 0].float().cpu()  # float: autocast may give bf16
                name = f"step{step:07d}_{_safe_name(item.get('id', i))}"
                write_wav(out_dir / f"{name}.wav", audio.numpy(), SPEC.sample_rate)
                save_mel_png(out_dir / f"{name}.png", [("input mel", mel.numpy()), (
                    "mel of the vocoded audio", spec.mel_spectrogram(audio)[:, : mel.shape[-1]].numpy())])
        gen.train(was_training)
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"sample_rate": SPEC.sample_rate, "hop_length": SPEC.hop_length,
                                 "spec": SPEC.to_dict()}
        manifest = self.data_dir / "manifest.json" if self.data_dir is not None else None
        if manifest is not None and manifest.is_file():
            extra["data_manifest_sha256"] = file_sha256(manifest)
        return extra


def make_task(cfg: VocoderConfig, data_dir: Path, **cli_opts: Any) -> VocoderTask:
    unexpected = sorted(k for k, v in cli_opts.items() if v is not None)
    if unexpected:
        raise VgsError(f"`vgs train vocoder` has no option(s) {', '.join(unexpected)}")
    return VocoderTask(cfg, data_dir)


# ----------------------------------------------------------------------------------------------- samples
def _safe_name(value: Any) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(value))[:80]
