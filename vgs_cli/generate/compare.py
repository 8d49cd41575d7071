"""`vgs generate VIDEO --samples N --compare cmp.mp4`: one video that plays the clip once per sample, each time
with that sample's sound and a caption ("sample 2 of 5, seed 7"), so the samples can be scrubbed through.

    write_compare("clip.mp4", [out_1.wav, ...], "cmp.mp4", seed=7) -> Path   # duration = N x the clip's

moviepy does the editing (caption, concatenation, the audio track), which is what it is for; it runs the same
ffmpeg binary as the rest of vgs (imageio-ffmpeg's). Decoding for the models stays with ffmpeg directly
(audio/io.py: sample-exact resampling, data/video.py: the reference's frame path). The caption's font is
matplotlib's DejaVuSans (a dependency already), so nothing is looked up on the system or the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path


def caption(k: int, n: int, seed: int) -> str:
    return f"sample {k + 1} of {n}, seed {seed}"


def _font() -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def write_compare(video: str | os.PathLike, wavs: list[Path], out: str | os.PathLike, *, seed: int,
                  sample_rate: int = 22050) -> Path:
    """The clip once per wav, in order, each with its wav as the sound and its caption at the bottom (mp4,
    H.264 + AAC; written atomically)."""
    from moviepy import AudioFileClip, CompositeVideoClip, TextClip, VideoFileClip, concatenate_videoclips

    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise DataError(f"--compare writes an mp4 video: give a name ending in .mp4, got {out}")
    clip = VideoFileClip(str(video), audio=False)
    opened = [clip]
    try:
        size = max(10, min(clip.w, clip.h) // 10)
        parts = []
        for k, wav in enumerate(wavs):
            sound = AudioFileClip(str(wav))
            opened.append(sound)
            text = TextClip(font=_font(), text=caption(k, len(wavs), seed), font_size=size, color="white",
                            bg_color="black").with_duration(clip.duration).with_position(("center", "bottom"))
            parts.append(CompositeVideoClip([clip, text]).with_audio(
                sound.with_duration(min(sound.duration, clip.duration))))
        joined = concatenate_videoclips(parts)
        with atomic_path(out) as tmp:  # the temp name has no .mp4 suffix: say the container
            joined.write_videofile(str(tmp), codec="libx264", audio_codec="aac", audio_fps=sample_rate,
                                   ffmpeg_params=["-f", "mp4"], temp_audiofile_path=str(tmp.parent),
                                   logger=None)
    finally:
        for c in opened:
            c.close()
    return out
