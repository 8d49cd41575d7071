"""`vgs serve`: the real server (a subprocess on a free port) driven by a real browser and by its API.

The models are tiny ones trained in the test (a few steps each on the session's `tiny_shards`: these tests are
about the page and the API, the numbers come from the same code as `vgs generate`). The browser is Debian's
headless Chromium (`apt-get install chromium`; .ci/run installs it) through Playwright's Python package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_generate import make_video

from vgs_cli.audio.io import read_wav
from vgs_cli.config.spec import SPEC

# find_spec, not importorskip: importing gradio costs ~8 s of CPU at collection in every pytest worker,
# also for `-m "not slow"` runs that deselect these tests; the server subprocess imports it.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("gradio") is None,
                                 reason="vgs serve needs the [serve] extra (make install installs it)")]
CHROMIUM = os.environ.get("VGS_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


STEPS = 4  # enough to be trained models (optimiser steps, best checkpoints), little enough for the suite


def train_models(folder: Path, shards: Path) -> Path:
    """codebook.ckpt, transformer.ckpt (5 feature frames), vocoder.ckpt in `folder`, each trained STEPS steps on
    `shards` through the trainer `vgs train` runs; the transformer records the codebook's SHA-256, which the
    copy keeps."""
    from vgs_cli.train.runner import run

    runs = folder.parent / "runs"
    steps = [f"train.steps={STEPS}", f"train.eval_every={STEPS}", "train.batch_size=2"]  # 6 training clips
    run("codebook", data=shards, preset="tiny", run_dir=runs / "codebook", device="cpu", overrides=steps)
    codebook = runs / "codebook" / "checkpoints" / "best.ckpt"
    # the codes cache goes to our own folder: `shards` is the session's shared, read-only tiny_shards (a cache
    # left there made test_transformer_train's own-cache count wrong)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VGS_CODES_CACHE", str(runs / "codes_cache"))
        run("transformer", data=shards, preset="tiny", run_dir=runs / "transformer", device="cpu", codebook=codebook,
            condition="feats", feat_frames=5, extractor=None, overrides=steps)
    run("vocoder", data=shards, preset="tiny", run_dir=runs / "vocoder", device="cpu", overrides=steps)
    folder.mkdir(parents=True)
    for stage in ("codebook", "transformer", "vocoder"):
        shutil.copyfile(runs / stage / "checkpoints" / "best.ckpt", folder / f"{stage}.ckpt")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_shards):
    """(url, models folder, output folder, HOME of the server, process)."""
    root = tmp_path_factory.mktemp("serve")
    models = train_models(root / "models", tiny_shards)
    out, home = root / "out", root / "home"
    home.mkdir()
    port = _free_port()
    env = {**os.environ, "HOME": str(home)}  # anything written to ~ would land here (the test checks it stays empty)
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vgs_cli", "serve", "--model", str(models), "--out", str(out),
                             "--port", str(port), "--max-seconds", "30"], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while not _alive(url):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("vgs serve did not start:\n" + (root / "server.log").read_text()[-3000:])
        time.sleep(1)
    yield url, models, out, home, proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (make install)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _upload(page, url: str, video: Path) -> None:
    page.goto(url)
    page.wait_for_selector("#generate")
    page.locator("#input-video input[type=file]").set_input_files(str(video))


def test_page_generates_sound_for_an_uploaded_video(server, browser, tmp_path):
    url, _, out, home, _ = server
    video = make_video(tmp_path / "clip.mp4", 3.0, audio=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    _upload(page, url, video)
    # the estimate comes up front, from the speeds measured at start-up
    page.wait_for_function("document.querySelector('#estimate').innerText.includes('tokens per sample')",
                           timeout=60_000)
    assert "3.0 s of video: 85 tokens per sample" in page.locator("#estimate").inner_text()
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=240_000)
    # the player's source (its file link) is a wav as long as the video
    src = page.locator("#sample-1 a[href*='sound.wav']").first.get_attribute("href")
    wav_path = tmp_path / "from_page.wav"
    urllib.request.urlretrieve(src, wav_path)
    wav, sr = read_wav(wav_path)
    assert sr == SPEC.sample_rate and abs(len(wav) - 3.0 * sr) <= SPEC.hop_length
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0
    # both spectrograms are shown (decoded images, not broken links), the video has its new sound track
    for sel in ("#generated-spec img", "#real-spec img"):
        page.wait_for_function(f"document.querySelector('{sel}') && document.querySelector('{sel}').naturalWidth > 0")
    assert page.locator("#output-video video").count() == 1
    links = page.eval_on_selector_all("#downloads a[href]", "els => els.map(e => e.href)")
    assert sorted({link.rsplit("/", 1)[-1] for link in links}) == ["sound.wav", "spectrogram.png", "video.mp4"]
    # the model card names each loaded checkpoint
    page.get_by_text("Model card").first.click()
    card = page.locator("#model-card").inner_text()
    for name in ("transformer.ckpt", "codebook.ckpt", "vocoder.ckpt", "feats (efficientnet_lite0, 5 frames)"):
        assert name in card, card
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 20_000
    # files only under the server's folder: the request folder is there, nothing appeared in HOME
    assert any((out / "requests").iterdir())
    assert not any(home.rglob("*")), sorted(map(str, home.rglob("*")))[:5]
    page.close()


def test_a_text_file_named_mp4_gives_a_message_and_the_server_goes_on(server, browser, tmp_path):
    url, _, _, _, proc = server
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video\n" * 50)
    page = browser.new_page()
    _upload(page, url, fake)
    said = "holiday.mp4 is not a video file that ffmpeg can read"
    # said twice: under the upload at once, then in the error pop-up of a Generate press
    page.locator("#estimate").get_by_text(said).wait_for(timeout=60_000)
    page.click("#generate")
    page.locator("[data-testid='toast-body']").filter(has_text=said).first.wait_for(timeout=60_000)
    assert "Done" not in page.locator("#status").inner_text()  # nothing was generated
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
    assert proc.poll() is None and _alive(url)
    page.close()


def test_the_page_compares_several_samples_in_one_video(server, browser, tmp_path):
    """Issue 27: the page offers `--compare` too: after 2 samples, one video playing the clip once per sample."""
    from vgs_cli.audio.io import probe

    url, _, out, _, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    _upload(page, url, make_video(tmp_path / "short.mp4", 1.0, audio=True))
    page.locator("#compare").wait_for(state="hidden")  # nothing to compare before a result with 2+ samples
    page.get_by_label("Samples (different sounds)").first.fill("2")
    page.get_by_label("Samples (different sounds)").first.press("Enter")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').innerText.includes('x 2')", timeout=240_000)
    page.click("#compare")
    page.wait_for_selector("#compare-video video", timeout=120_000)
    made = sorted((out / "requests").glob("*/compare.mp4"))
    assert len(made) == 1 and probe(made[0]).duration_s == pytest.approx(2.0, abs=0.15)
    page.close()


def test_api_gives_the_same_wav_as_vgs_generate(server, tmp_path, vgs):
    from gradio_client import Client, handle_file

    url, models, _, _, _ = server
    video = make_video(tmp_path / "api.mp4", 2.0)
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    files, info = client.predict(handle_file(str(video)), 1, 0.9, 20, 1.0, 5, "", "melgan", api_name="/generate")
    assert info["wavs"] == ["sound.wav"] and info["seconds"] == pytest.approx(2.0, abs=0.05)
    api_wav, _ = read_wav(files[0])
    # `vgs generate` in this process (the server is the other process): one interpreter+torch start fewer
    proc = vgs("generate", str(video), "-o", str(tmp_path / "cli.wav"), "--model", str(models), "--seed", "5",
               "--temperature", "0.9", "--top-k", "20")
    assert proc.returncode == 0, proc.stderr
    cli_wav, _ = read_wav(tmp_path / "cli.wav")
    np.testing.assert_array_equal(api_wav, cli_wav)
    shutil.rmtree(tmp_path / "downloads", ignore_errors=True)
