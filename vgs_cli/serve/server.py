"""Start `vgs serve`: confine every file to the output folder, load the models once, warm up, launch.

Order matters: the address is checked and `--out` claimed first (a taken port is one line, not a minute of
loading later); the environment (gradio's upload/cache folder, temp files, matplotlib's and huggingface's
caches) is pointed into `out_dir` BEFORE gradio is imported, because gradio reads it at import time.
What the server publishes (`GET /gradio_api/file=...`): gradio's upload folder (uploads and gradio's copies of
results and examples), `--out/requests` and `--out/examples` (copies of the example videos), nothing else.
A janitor thread deletes uploads and results older than --keep-minutes that no running or queued request
uses, in the server's own subfolders only (`outdir.py`).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vgs_cli.errors import VgsError
from vgs_cli.serve.listen import LOCAL, check_listen, wait_until_interrupted
from vgs_cli.serve.outdir import OutDir, claim


@dataclass
class ServeOptions:
    out_dir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 1
    max_seconds: float = 600.0
    max_upload_mb: float = 200.0
    keep_minutes: float = 60.0
    examples: list[Path] | None = None  # video files or folders of videos (only the videos are taken)
    device: str | None = None
    gl_iters: int = 32
    visual_weights: str | None = None
    quantize: str = "none"
    precision: str = "fp32"
    model_kwargs: dict = field(default_factory=dict)  # resolve_models' model/transformer/codebook/vocoder_ckpt/vocoder


def confine_files(out: OutDir) -> dict[str, Path]:
    """Point every writer we know of into `out` (must run before gradio is imported)."""
    dirs = {"GRADIO_TEMP_DIR": out.uploads, "TMPDIR": out.tmp, "MPLCONFIGDIR": out.cache / "matplotlib",
            "HF_HOME": out.cache / "huggingface",
            # gradio serves its example cache too; its default is ./.gradio/cached_examples (the cwd)
            "GRADIO_EXAMPLES_CACHE": out.cache / "gradio_examples"}
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(path)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no calls home (and none possible offline)
    tempfile.tempdir = str(dirs["TMPDIR"])
    return dirs


def _janitor(clean: Callable[[], int], every_s: float) -> None:
    def loop() -> None:
        while True:
            time.sleep(every_s)
            try:
                clean()
            except OSError:
                pass  # a file in use or gone: try again next round

    threading.Thread(target=loop, name="vgs-serve-janitor", daemon=True).start()


def serve(opts: ServeOptions, log: Callable[[str], None] = print) -> None:
    """Blocks until interrupted."""
    check_listen(opts.host, opts.port)
    out = claim(opts.out_dir)
    out_dir = out.root
    confine_files(out)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise VgsError('vgs serve needs the [serve] extra: pip install -e ".[serve]" (gradio)') from None
    from vgs_cli.generate.engine import load_bundle
    from vgs_cli.loading.default_model import resolve
    from vgs_cli.serve.card import card_markdown, model_card
    from vgs_cli.serve.examples import demo_models, find_examples, publish_examples
    from vgs_cli.serve.page import build_page, example_copies, queued_files, quiet_gradio_rejections
    from vgs_cli.serve.service import Limits, Service

    kwargs = dict(opts.model_kwargs)
    model = kwargs.get("model")
    demo = demo_models(Path(model)) if model and not kwargs.get("transformer") else None
    if demo:
        kwargs = {**kwargs, **{k: kwargs.get(k) or v for k, v in demo.items()}, "model": None}
        log(f"{model} is a `make demo` output folder: serving its feature-conditioned models")
    t0 = time.perf_counter()
    paths = resolve(**kwargs)  # no model named: $VGS_MODEL, else the default model (as vgs generate)
    log(f"model: {paths.source or paths.transformer}")
    near = [p for p in (Path(model) if model else None, paths.transformer) if p is not None]
    # before the models load (a bad --examples fails at once); the page offers copies in --out/examples only
    examples = publish_examples(find_examples(opts.examples, near), out.examples)
    bundle = load_bundle(paths, vocoder=kwargs.get("vocoder", "melgan"), device=opts.device, gl_iters=opts.gl_iters)
    limits = Limits(max_seconds=opts.max_seconds, max_upload_mb=opts.max_upload_mb, keep_minutes=opts.keep_minutes)
    svc = Service(bundle, out_dir, limits, gl_iters=opts.gl_iters, visual_weights=opts.visual_weights,
                  quantize=opts.quantize, precision=opts.precision)
    log(f"models loaded in {time.perf_counter() - t0:.1f} s; warming up on a 1-s clip ...")
    speeds = svc.calibrate()
    log(f"warm: {speeds.tokens_per_s:.3g} tokens/s (sampling), ready in {time.perf_counter() - t0:.1f} s")
    running = str(bundle.device) + (", int8 transformer" if opts.quantize == "int8" else "") + \
        (f", {opts.precision} sampling" if opts.precision != "fp32" else "")
    page = build_page(svc, card_markdown(model_card(bundle), running), examples, opts.concurrency, log=log)
    quiet_gradio_rejections(log)
    page.queue(default_concurrency_limit=opts.concurrency)
    kept = example_copies(out.uploads, examples)

    def clean() -> int:
        queued = queued_files(page)  # None: gradio's queue unreadable, so no upload can be known unused
        folders = [f for f in out.cleanable() if not (f == out.uploads and queued is None)
                   and not (f == out.tmp and svc.busy)]  # a running request's temp files carry no other mark
        return svc.cleanup(folders, keep=(queued or set()) | kept)

    _janitor(clean, max(1.0, min(60.0, opts.keep_minutes * 60 / 4)))
    allowed = [str(out.requests), str(out.examples)]  # never a folder outside --out (gradio adds uploads/)
    if opts.host not in LOCAL:
        log(f"warning: listening on {opts.host}: anyone who can reach this machine can use the page and the API")
    try:
        page.launch(server_name=opts.host, server_port=opts.port, max_file_size=int(opts.max_upload_mb * 2**20),
                    allowed_paths=allowed, show_error=True, ssr_mode=False, footer_links=["api"],
                    prevent_thread_lock=True)
    except OSError as exc:
        raise VgsError(f"cannot listen on {opts.host}:{opts.port} ({exc}); pick another --port") from None
    wait_until_interrupted(lambda: page.is_running, page.close, f"the results stay in {out.requests}")
