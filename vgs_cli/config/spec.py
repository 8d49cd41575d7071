"""The spectrogram and video timing of the paper. Fixed: recorded in every file so mismatches are caught."""

from __future__ import annotations

from dataclasses import dataclass

from vgs_cli.config.base import Config


@dataclass(frozen=True)
class SpecConfig(Config):
    sample_rate: int = 22050
    duration_s: float = 10.0
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 125.0
    fmax: float = 7600.0
    pad_mode: str = "reflect"  # librosa 0.8's default; newer librosa pads with zeros
    amin: float = 1e-5
    ref_db: float = 20.0
    min_db: float = -100.0
    stored_frames: int = 860
    model_frames: int = 848
    fps: float = 21.5

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    @property
    def num_video_frames(self) -> int:
        return int(round(self.fps * self.duration_s))

    @property
    def video_frames_per_mel_frame(self) -> float:
        """Video frames per mel frame (hop): 256 / 22050 s * 21.5 fps = 0.2496."""
        return self.hop_length * self.fps / self.sample_rate

    @property
    def model_video_frames(self) -> int:
        """Video frames spanned by the models' mel crop: round(848 * 0.2496) = 212, the reference's
        `feat_crop_len` (the centre 212 of the 215 stored frames condition a clip)."""
        return int(round(self.model_frames * self.video_frames_per_mel_frame))


SPEC = SpecConfig()
