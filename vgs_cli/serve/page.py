"""The Gradio page and its HTTP API, built around a warm `Service` (imports gradio: the `[serve]` extra).

Endpoints (see README, `vgs serve`): `/generate` takes (video, samples, temperature, top_k, top_p, seed,
class_name, vocoder) and returns (files: the wavs, then the videos with the new sound, then the spectrogram
PNG; info: a JSON dict naming them). `top_k` 0 and `top_p` 1 mean "off"; `class_name` "" means the model's
first class; `vocoder` is one of the page's choices. The page's own button drives an undocumented endpoint
with richer outputs.
Both share one concurrency group, so at most `--concurrency` generations run at once and the rest queue.
Both take the raw values (`preprocess=False`) and check them here, so a bad value is one line naming the field
and what it may be (gradio's own checks name neither), told to the client and printed as one line in the
server's console (no traceback: it is the request's fault, not the server's).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from vgs_cli.errors import VgsError
from vgs_cli.serve.service import MAX_SAMPLES, Result, Service, Settings

INTRO = """# vgs: sound for a silent video
Upload a video (or pick an example), choose the settings and press **Generate**: the model watches the video
and writes a sound track for it, as long as the video. Requests queue: the page shows your place in line."""


SEED_MAX = 2**63 - 1


def _number(field: str, value: Any, allowed: str, *, whole: bool, ok: Callable[[float], bool]) -> float:
    """A raw JSON value (number, numeric string) -> the number, else a VgsError naming `field` and `allowed`."""
    try:
        if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError
        number = float(value) if not isinstance(value, int) else value
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise VgsError(f"{field} must be {allowed}, got {value!r}") from None
    if (whole and number != int(number)) or not ok(number):
        raise VgsError(f"{field} must be {allowed}, got {value!r}")
    return int(number) if whole else float(number)


def _settings(svc: Service, samples, temperature, top_k, top_p, seed, class_name, vocoder) -> Settings:
    """The raw values of a request (numbers or numeric strings; "" or None for unset) -> Settings; a bad value
    -> a VgsError naming the field and its allowed range."""
    n = _number("samples", samples, f"a whole number from 1 to {MAX_SAMPLES}", whole=True,
                ok=lambda v: 1 <= v <= MAX_SAMPLES)
    t = _number("temperature", temperature, "a number > 0 (1 = as trained)", whole=False, ok=lambda v: v > 0)
    k = 0 if top_k in (None, "") else _number("top_k", top_k, "a whole number >= 0 (0 = all codes)", whole=True,
                                              ok=lambda v: v >= 0)
    p = 1.0 if top_p in (None, "") else _number("top_p", top_p, "a number in (0, 1] (1 = off)", whole=False,
                                                ok=lambda v: 0 < v <= 1)
    s = 0 if seed in (None, "") else _number("seed", seed, f"a whole number from 0 to {SEED_MAX}", whole=True,
                                             ok=lambda v: 0 <= v <= SEED_MAX)
    for field, value in (("class_name", class_name), ("vocoder", vocoder)):
        if value is not None and not isinstance(value, str):
            raise VgsError(f"{field} must be text, got {value!r}")
    return Settings(samples=n, temperature=t, top_k=k or None, top_p=p if p < 1 else None, seed=s,
                    class_name=class_name or (svc.classes[0] if svc.classes else None),
                    vocoder=vocoder or svc.vocoders[0])


def _video_path(raw: Any) -> str | None:
    """The raw video value (gradio's file dict after its upload check, or a path) -> its path."""
    path = raw.get("path") if isinstance(raw, dict) else raw
    return str(path) if path else None


def _reject(log: Callable[[str], None], message: str, title: str) -> gr.Error:
    """The request's own fault: one line for the client and one in the server's console, no traceback."""
    log(f"rejected a request: {message}")
    return gr.Error(message, title=title, print_exception=False)


def _run(svc: Service, raw: tuple, progress: Any, log: Callable[[str], None]) -> tuple[Result, Settings]:
    """One generation from the raw inputs; every user problem becomes one readable line in the page and in
    the console (the server keeps serving)."""
    video, *values = raw
    try:
        settings = _settings(svc, *values)
    except VgsError as exc:
        raise _reject(log, str(exc), "Bad setting") from None
    video = _video_path(video)
    if not video:
        raise _reject(log, "upload a video first (or pick an example)", "No video")
    try:
        return svc.generate(video, settings, report=lambda frac, msg: progress(frac, desc=msg)), settings
    except VgsError as exc:
        raise _reject(log, str(exc), "Cannot generate") from None
    except Exception as exc:  # a bug: say so in one line; gradio logs it (traceback) and goes on serving
        raise gr.Error(f"internal error: {type(exc).__name__}: {exc}", title="Internal error") from exc


def quiet_gradio_rejections(log: Callable[[str], None] = print) -> None:
    """The requests gradio rejects itself, before our code runs (a file that was never uploaded: its
    `InvalidPathError`), print one line as ours do, not gradio's traceback. gradio's queue prints through its
    module's `traceback`; anything else (a bug) still gets the full traceback. No-op if gradio changed."""
    import sys

    import gradio.queueing as queueing
    from gradio.exceptions import InvalidPathError

    real = getattr(queueing, "traceback", None)
    if real is None or not hasattr(real, "print_exc") or getattr(real, "_vgs_quiet", False):
        return

    class Quiet:
        _vgs_quiet = True

        def __getattr__(self, name: str):
            return getattr(real, name)

        def print_exc(self, *args, **kwargs) -> None:
            exc = sys.exc_info()[1]
            if isinstance(exc, InvalidPathError):
                log(f"rejected a request: {exc}")
            else:
                real.print_exc(*args, **kwargs)

    queueing.traceback = Quiet()


def queued_files(page: gr.Blocks) -> set[Path] | None:
    """The files named by the requests waiting in gradio's queue or running (their uploads must not be
    cleaned); None when gradio's queue cannot be read (then nothing uploaded may be cleaned)."""
    try:
        queue = page._queue
        events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
        events += [e for job in list(queue.active_jobs) if job for e in job]  # after the queue: none slips by
    except (AttributeError, TypeError):
        return None
    found: set[Path] = set()
    todo = [getattr(getattr(e, "data", None), "data", None) for e in events]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if isinstance(item.get("path"), str):
                found.add(Path(item["path"]).resolve())
            todo += list(item.values())
        elif isinstance(item, (list, tuple)):
            todo += list(item)
    return found


def example_copies(uploads: Path, examples: list[Path]) -> set[Path]:
    """gradio's copies of the example videos in its upload folder (`<hash>/<name>`, made when the page was
    built): the page offers them as long as the server runs, so they are never cleaned."""
    wanted = {(p.name, p.stat().st_size) for p in examples if p.is_file()}
    return {f.resolve() for f in uploads.glob("*/*") if f.is_file() and (f.name, f.stat().st_size) in wanted}


def _info(result: Result, settings: Settings) -> dict[str, Any]:
    return {"seconds": result.seconds, "sample_rate": 22050, "samples": len(result.wavs),
            "wavs": [p.name for p in result.wavs], "videos": [p.name for p in result.videos],
            "spectrogram": result.spectrogram.name, "elapsed_s": round(result.elapsed, 3),
            "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}


def build_page(svc: Service, card: str, examples: list[Path], concurrency: int = 1,
               log: Callable[[str], None] = print) -> gr.Blocks:
    """`examples`: the published copies (under --out/examples); `log`: the server's console."""
    classes, vocoders = svc.classes, svc.vocoders
    with gr.Blocks(title="vgs serve") as page:
        gr.Markdown(INTRO)
        with gr.Accordion("Model card: the checkpoints this server loaded", open=False):
            gr.Markdown(card, elem_id="model-card")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], elem_id="input-video")
                estimate = gr.Markdown(elem_id="estimate")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[video], label="Examples (held-out videos)")
                with gr.Accordion("Settings", open=True):
                    samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples (different sounds)")
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                    top_k = gr.Number(0, precision=0, minimum=0, label="Top-k (0 = all codes)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1 = off)")
                    seed = gr.Number(0, precision=0, label="Seed (same seed, same sound)")
                    class_name = gr.Dropdown(classes, value=classes[0] if classes else None, label="Class",
                                             visible=bool(classes), allow_custom_value=True)  # API: "" = default
                    vocoder = gr.Radio(vocoders, value=vocoders[0], label="Vocoder")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                out_video = gr.Video(label="The video with its new sound track", elem_id="output-video",
                                     interactive=False, height=360)
                audios = [gr.Audio(type="filepath", label=f"Sample {k + 1}", visible=k == 0, interactive=False,
                                   elem_id=f"sample-{k + 1}") for k in range(MAX_SAMPLES)]
                with gr.Row():
                    gen_img = gr.Image(type="filepath", label="Generated spectrogram", elem_id="generated-spec",
                                       interactive=False)
                    real_img = gr.Image(type="filepath", label="Real spectrogram (the video's own sound)",
                                        elem_id="real-spec", interactive=False)
                compare_btn = gr.Button("Compare the samples: one video, the clip once per sample", visible=False,
                                        elem_id="compare")
                compare_video = gr.Video(label="All samples, one after another (captioned)", visible=False,
                                         interactive=False, elem_id="compare-video", height=360)
                files = gr.File(label="Downloads", file_count="multiple", elem_id="downloads", interactive=False)
                last = gr.State(None)  # (request folder, seed) of the last result: what "compare" works on
        inputs = [video, samples, temperature, top_k, top_p, seed, class_name, vocoder]

        def on_video(path: str | None, n: float):
            """Up front: how long the request will take, from the speeds this server measured."""
            if not path:
                return ""
            try:
                seconds = svc.check_video(path)
            except VgsError as exc:
                return f"**Cannot use this file:** {exc}"
            est = svc.estimate(seconds, int(n))
            if est is None:
                return f"{seconds:.1f} s of video."
            note = " That is a long one: it will take a while." if est.seconds > 60 else ""
            return (f"{seconds:.1f} s of video: {est.tokens} tokens per sample, about {est.seconds:.0f} s "
                    f"at {svc.speeds.tokens_per_s:.3g} tokens/s.{note}")

        video.change(on_video, [video, samples], estimate, queue=False, api_visibility="private")
        samples.change(on_video, [video, samples], estimate, queue=False, api_visibility="private")

        def on_generate(v, n, t, k, p, s, c, voc, progress=gr.Progress()):  # noqa: B008 (gradio's idiom)
            result, _ = _run(svc, (v, n, t, k, p, s, c, voc), progress, log)
            shown = [gr.Audio(value=str(w), visible=True) for w in result.wavs]
            hidden = [gr.Audio(value=None, visible=False) for _ in range(MAX_SAMPLES - len(result.wavs))]
            t_ = result.timings
            done = (f"**Done** in {result.elapsed:.1f} s ({result.seconds:.1f} s of audio x {len(result.wavs)}): "
                    + ", ".join(f"{name} {sec:.1f} s" for name, sec in t_.items()))
            downloads = [str(p) for p in [*result.wavs, *result.videos, result.spectrogram]]
            real = str(result.real_spectrogram) if result.real_spectrogram else None
            several = len(result.wavs) > 1
            return [done, str(result.videos[0]), *shown, *hidden, str(result.spectrogram),
                    gr.Image(value=real, label="Real spectrogram (the video's own sound)" if real
                             else "Real spectrogram: the video has no sound"), downloads,
                    gr.Button(visible=several), gr.Video(value=None, visible=False),
                    (str(result.folder), int(s)) if several else None]

        button.click(on_generate, inputs, [status, out_video, *audios, gen_img, real_img, files, compare_btn,
                                           compare_video, last],
                     api_name="generate_page", api_visibility="undocumented", concurrency_id="generate",
                     concurrency_limit=concurrency, preprocess=False)

        def on_compare(state):
            if not state:
                raise _reject(log, "generate 2 or more samples first", "Nothing to compare")
            try:
                path = svc.compare(state[0], state[1])
            except VgsError as exc:
                raise _reject(log, str(exc), "Cannot compare") from None
            return gr.Video(value=str(path), visible=True)

        compare_btn.click(on_compare, [last], [compare_video], api_visibility="private",
                          concurrency_id="generate", concurrency_limit=concurrency)

        # The documented API: plain values in, files + a JSON dict out (hidden outputs: the page never shows them).
        api_files = gr.File(file_count="multiple", visible=False)
        api_info = gr.JSON(visible=False)

        def api_generate(v, n, t, k, p, s, c, voc, progress=gr.Progress()):  # noqa: B008
            result, settings = _run(svc, (v, n, t, k, p, s, c, voc), progress, log)
            return [str(x) for x in [*result.wavs, *result.videos, result.spectrogram]], _info(result, settings)

        api_trigger = gr.Button(visible=False)
        api_trigger.click(api_generate, inputs, [api_files, api_info], api_name="generate",
                          concurrency_id="generate", concurrency_limit=concurrency, preprocess=False)
    return page
