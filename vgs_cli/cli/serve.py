"""`vgs serve --model DIR`: the web page + HTTP API with warm models (needs the `[serve]` extra: gradio)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vgs_cli.errors import VgsError

HELP = (
    "Serve a web page and an HTTP API that turn a video into sound, with the models loaded once.\n\n"
    "Open http://HOST:PORT in a browser; the API is listed at http://HOST:PORT/?view=api (gradio_client or plain "
    "HTTP, see the README). Uploads and results live under --out and are deleted after --keep-minutes.\n\n"
    "What anyone who reaches the server can fetch: only files under --out, namely the uploads, the results "
    "(--out/requests) and copies of the example videos (--out/examples). Example videos are copied (or "
    "hard-linked) there, never served from their own folders; other files of --out, of the model folder or "
    "of an --examples folder are never served. An existing --out folder is fine: the server cleans only the "
    "subfolders it made (listed in --out/.vgs-serve.json).\n\n"
    "By default the server listens on 127.0.0.1: only this machine can reach it. --host 0.0.0.0 exposes it to "
    "every network this machine is on: anyone who can reach the port can upload files and use this machine's "
    "CPU/GPU, with no login. Expose it only on a network you trust, or behind a proxy that adds authentication."
)


def serve(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Folder (or run folders) with the codebook, transformer and vocoder checkpoints, or a `make demo` output folder."),
    transformer: Optional[Path] = typer.Option(None, "--transformer", help="Transformer checkpoint (overrides --model)."),
    codebook: Optional[Path] = typer.Option(None, "--codebook", help="Codebook checkpoint (default: the transformer's)."),
    vocoder_ckpt: Optional[Path] = typer.Option(None, "--vocoder-ckpt", help="MelGAN vocoder checkpoint (overrides --model)."),
    vocoder: str = typer.Option("melgan", "--vocoder", help="Default vocoder: melgan or griffinlim (the page can switch to griffinlim)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. 127.0.0.1: this machine only; 0.0.0.0: every network (no login!)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    out: Path = typer.Option(Path("serve_out"), "--out", "-o", help="The server's own folder: uploads, results, caches. Nothing is written elsewhere."),
    examples: Optional[List[Path]] = typer.Option(None, "--examples", help="Example videos for the page: a video file or a folder of videos (repeat for more; only files ffmpeg reads as videos are taken, and copied into --out/examples). Default: a `make demo` folder's held-out videos."),
    concurrency: int = typer.Option(1, "--concurrency", help="Generations that run at once; the rest wait in a queue."),
    max_seconds: float = typer.Option(600.0, "--max-seconds", help="Longest video accepted (seconds)."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", help="Largest upload accepted (MB)."),
    keep_minutes: float = typer.Option(60.0, "--keep-minutes", help="Delete uploads and results older than this."),
    visual_weights: Optional[Path] = typer.Option(None, "--visual-weights", help="Weights file of the visual feature extractor."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    gl_iters: int = typer.Option(32, "--gl-iters", help="Griffin-Lim iterations (with the griffinlim vocoder)."),
    quantize: str = typer.Option("none", "--quantize", help="none or int8: int8 transformer weights on the CPU, "
                                 "for every request (as vgs generate --quantize)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (GPU): sample under autocast "
                                  "(as vgs generate --precision)."),
) -> None:
    from vgs_cli.serve.server import ServeOptions
    from vgs_cli.serve.server import serve as run_server

    if concurrency < 1:
        raise VgsError("--concurrency must be at least 1")
    if max_seconds <= 0 or max_upload_mb <= 0 or keep_minutes <= 0:
        raise VgsError("--max-seconds, --max-upload-mb and --keep-minutes must be > 0")
    if not 0 < port < 65536:
        raise VgsError(f"--port must be 1-65535, got {port}")
    if out.exists() and not out.is_dir():
        raise VgsError(f"--out {out} is a file; give a folder")
    opts = ServeOptions(out_dir=out, host=host, port=port, concurrency=concurrency, max_seconds=max_seconds,
                        max_upload_mb=max_upload_mb, keep_minutes=keep_minutes, examples=examples, device=device,
                        gl_iters=gl_iters, quantize=quantize, precision=precision, visual_weights=str(visual_weights) if visual_weights else None,
                        model_kwargs=dict(model=model, transformer=transformer, codebook=codebook,
                                          vocoder_ckpt=vocoder_ckpt, vocoder=vocoder))
    run_server(opts, log=typer.echo)
