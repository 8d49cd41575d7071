"""`vgs serve` at paper size: a second request to a warm server vs a cold `vgs generate` (the loading saved).

Paper-size checkpoints (random weights, as bench/generate.py), a 2-s video (the loading cost does not depend
on the length; a short clip keeps this quick). Cold: the whole `vgs generate` process. Warm: the server is
started (loads once, warms up), then the same video is sent twice through the HTTP API (gradio_client); the
second call's wall time is the latency a user sees once the server is up.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

OUT = Path("bench_out/serve")
SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vgs serve exited with {proc.returncode} (log: {OUT / 'server.log'})")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError("vgs serve did not answer in time")


def rows() -> list[tuple[str, float, str]]:
    from gradio_client import Client, handle_file

    from bench.generate import _paper_models, write_paper_checkpoints
    from vgs_cli.data.video import write_video

    models = write_paper_checkpoints(_paper_models(), OUT / "models")
    video = OUT / "video2s.mp4"
    write_video(video, np.random.default_rng(2).integers(0, 255, (50, 240, 320, 3), dtype=np.uint8), 25.0)

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vgs_cli", "generate", str(video), "-o", str(OUT / "cold.wav"),
                           "--model", str(models)], capture_output=True, text=True)
    cold = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(OUT / "server.log", "w") as log:
        t0 = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "vgs_cli", "serve", "--model", str(models), "--out",
                                   str(OUT / "server"), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(url, server)
            startup = time.perf_counter() - t0
            client = Client(url, verbose=False, download_files=str(OUT / "downloads"))
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                client.predict(handle_file(str(video)), 1, 1.0, 0, 1.0, 0, "", "melgan", api_name="/generate")
                times.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return [
        (f"cold `vgs generate`, {SECONDS:g}-s video, paper size (load + generate) (s)", cold, "s"),
        ("warm `vgs serve`: 2nd API request, same video (s)", times[1], "s"),
        ("time saved per request by warm models (s)", cold - times[1], "s"),
        ("`vgs serve` start-up: load + 2 warm-up runs until it answers (s)", startup, "s"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
