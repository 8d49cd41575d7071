"""`vgs codec encode|decode|reconstruct`: the spectrogram codebook as a neural audio codec.

Argument parsing and printing only; `vgs_cli.generate.codec` does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

CODEBOOK_HELP = "Codebook checkpoint (or its run folder: best.ckpt, else last.ckpt)."
VOCODER = typer.Option("griffinlim", "--vocoder", help="griffinlim (no weights) or melgan (needs --vocoder-ckpt).")
VOCODER_CKPT = typer.Option(None, "--vocoder-ckpt", help="MelGAN vocoder checkpoint or run folder.")
DEVICE = typer.Option("cpu", "--device", help="cpu or cuda.")


def _bitrate_line(meta: dict) -> str:
    return (f"bitrate: {meta['bits_per_second']:.1f} bit/s "
            f"({meta['tokens_per_second']:.2f} tokens/s x log2 of the codebook size)")


@app.command("encode")
def encode(
    wav: Path = typer.Argument(..., help="Sound file to encode (any length; resampled to 22050 Hz mono)."),
    out: Path = typer.Option(..., "--out", "-o", help="Codes file to write (.npy; a .json sidecar goes next to it)."),
    codebook: Path = typer.Option(..., "--codebook", help=CODEBOOK_HELP),
    device: str = DEVICE,
) -> None:
    """Encode a sound file into codebook indices [5, columns]."""
    from vgs_cli.generate.codec import encode_wav_file

    meta = encode_wav_file(wav, out, codebook, device=device)
    seconds = meta["num_samples"] / meta["sample_rate"]
    typer.echo(f"wrote {out}: codes {meta['shape'][0]}x{meta['shape'][1]} ({meta['dtype']}) for {seconds:.2f} s")
    typer.echo(_bitrate_line(meta))


@app.command("decode")
def decode(
    codes: Path = typer.Argument(..., help="Codes file written by `vgs codec encode`."),
    out: Path = typer.Option(..., "--out", "-o", help="Wav file to write."),
    codebook: Optional[Path] = typer.Option(None, "--codebook", help=CODEBOOK_HELP + " Default: the one the "
                                            "sidecar names (its SHA-256 is checked either way)."),
    vocoder: str = VOCODER,
    vocoder_ckpt: Optional[Path] = VOCODER_CKPT,
    device: str = DEVICE,
) -> None:
    """Decode codebook indices back to a waveform (codes -> mel -> vocoder)."""
    from vgs_cli.generate.codec import decode_codes_file

    meta = decode_codes_file(codes, out, codebook=codebook, vocoder=vocoder, vocoder_ckpt=vocoder_ckpt,
                             device=device)
    typer.echo(f"wrote {out}: {meta['num_samples']} samples ({meta['mel_frames']} mel frames, {meta['vocoder']})")
    typer.echo(_bitrate_line(meta))


@app.command("reconstruct")
def reconstruct(
    data: Path = typer.Option(..., "--data", "-d", help="Shard folder written by `vgs prepare`."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    codebook: Path = typer.Option(..., "--codebook", help=CODEBOOK_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <clip_id>.npy mels and .wav files."),
    vocoder: str = VOCODER,
    vocoder_ckpt: Optional[Path] = VOCODER_CKPT,
    no_wav: bool = typer.Option(False, "--no-wav", help="Only write the reconstructed mels."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Clips per batch."),
    device: str = DEVICE,
) -> None:
    """Reconstruct every clip of a split through the codebook (for `vgs eval --fake OUT`)."""
    from tqdm import tqdm

    from vgs_cli.generate.codec import reconstruct_split

    with tqdm(desc="reconstruct", unit="clip", disable=None, leave=False) as bar:
        summary = reconstruct_split(data, split, codebook, out, vocoder=None if no_wav else vocoder,
                                    vocoder_ckpt=vocoder_ckpt, device=device, batch_size=batch_size,
                                    progress=bar.update)
    typer.echo(f"wrote {summary['clips']} reconstructions of {split} to {out} "
               f"(mean mel L1 {summary['mel_l1']:.4f}); score them with `vgs eval --fake {out}`")
    typer.echo(f"bitrate: {summary['bits_per_second']:.1f} bit/s")
