"""`vgs serve` publishes only files under its `--out`, deletes only its own files, and rejects bad requests and
stops in one line: the real server (a subprocess), driven over HTTP (issue 25).

Two servers on the same tiny trained models (see tests/test_serve.py):
- "labels": a model folder whose `data/source/labels.csv` names files outside its folder, a non-video and a
  video beside a private file; an existing `--out` holding the user's own old files; `--keep-minutes 0.05`.
- "examples": `--examples` naming a `~`-like folder (a video, a private file, `.ssh/`) and a video file with a
  private file beside it.
Every file outside `--out` is asked for through `GET /gradio_api/file=<path>` and must be refused (403/404).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_generate import make_video
from test_serve import _alive, _free_port, train_models

pytestmark = pytest.mark.slow  # real servers: ~30 s each to start on 2 cores
gradio_client = pytest.importorskip("gradio_client", reason="vgs serve needs the [serve] extra")
KEEP_MINUTES = 0.05  # 3 s: a request that takes longer must keep its upload (and the queued one's)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _file(url: str, path: Path | str) -> tuple[int, bytes]:
    return _get(f"{url}/gradio_api/file={urllib.parse.quote(str(path))}")


def _start(root: Path, *args: str) -> tuple[str, subprocess.Popen, Path]:
    """`vgs serve ARGS` on a free port with HOME=root/home; -> (url, process, its console log)."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = root / "server.log"
    with open(log, "w") as fh:
        # SIGINT as in a terminal: a shell starting a background job (this test's, perhaps) makes it ignored
        proc = subprocess.Popen([sys.executable, "-m", "vgs_cli", "serve", *args, "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(root / "home")},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while not _alive(url):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("vgs serve did not start:\n" + log.read_text()[-3000:])
        time.sleep(1)
    return url, proc, log


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def _example_files(url: str) -> list[dict]:
    """The example videos the page offers (gradio's file dicts, from the page's config)."""
    _, body = _get(f"{url}/config")
    found = []
    for comp in json.loads(body)["components"]:
        if comp.get("type") == "dataset":
            found += [cell for row in comp["props"].get("samples", []) for cell in row if isinstance(cell, dict)]
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_shards) -> Path:
    return train_models(tmp_path_factory.mktemp("serve_models") / "models", tiny_shards)


@pytest.fixture(scope="module")
def labels_server(tmp_path_factory, models):
    """(url, root, process, log): the model folder (a copy) carries a hostile data/source/labels.csv."""
    root = tmp_path_factory.mktemp("labels")
    model = root / "model"
    model.mkdir()
    for ckpt in models.glob("*.ckpt"):
        os.link(ckpt, model / ckpt.name)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret").write_text("password=hunter2\n")
    (outside / "private.txt").write_text("private\n")
    make_video(outside / "clip.mp4", 0.4)
    source = model / "data" / "source"
    (source / "videos").mkdir(parents=True)
    make_video(source / "videos" / "ok.mp4", 0.4)
    (source / "videos" / "private.txt").write_text("private beside the example\n")
    (source / "videos" / "notes.mp4").write_text("a text file named .mp4\n")
    (source / "videos" / "link.mp4").symlink_to(outside / "clip.mp4")
    rows = ["../../../outside/secret", "../../../outside/clip.mp4", str(outside / "clip.mp4"), "videos/link.mp4",
            "videos/notes.mp4", "videos/private.txt", "videos/ok.mp4"]
    (source / "labels.csv").write_text("path,label,split\n" + "".join(f"{r},x,test\n" for r in rows))
    # an existing --out with the user's own old files (one where the server would put its temp files)
    out = root / "out"
    (out / "tmp").mkdir(parents=True)
    old = time.time() - 2 * 3600
    for user_file in (out / "tmp" / "draft.txt", out / "notes.txt"):
        user_file.write_text("the user's own\n")
        os.utime(user_file, (old, old))
    url, proc, log = _start(root, "--model", str(model), "--out", str(out), "--keep-minutes", str(KEEP_MINUTES),
                            "--max-seconds", "30")
    yield url, root, proc, log
    _stop(proc)


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory, models):
    """(url, root, process): `--examples SHARE/example.mp4 --examples HOME_LIKE_FOLDER`."""
    root = tmp_path_factory.mktemp("examples")
    home = root / "home_like"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (home / "notes_private.txt").write_text("private\n")
    make_video(home / "holiday.mp4", 0.4)
    share = root / "share"
    share.mkdir()
    make_video(share / "example.mp4", 0.6)
    (share / "notes_private.txt").write_text("private beside the example\n")
    url, proc, _ = _start(root, "--model", str(models), "--out", str(root / "out"), "--examples",
                          str(share / "example.mp4"), "--examples", str(home))
    yield url, root, proc
    _stop(proc)


def test_a_crafted_labels_csv_publishes_only_copies_of_its_videos(labels_server):
    url, root, _, _ = labels_server
    model, out = root / "model", root / "out"
    source = model / "data" / "source"
    # every file outside --out: those labels.csv names, those beside them, the model's own files
    outside = [root / "outside" / "secret", root / "outside" / "private.txt", root / "outside" / "clip.mp4",
               source / "videos" / "private.txt", source / "videos" / "ok.mp4", source / "videos" / "notes.mp4",
               source / "videos" / "link.mp4", source / "labels.csv", model / "transformer.ckpt",
               root / "home" / ".bashrc", "/etc/passwd"]
    (root / "home" / ".bashrc").write_text("export SECRET=1\n")
    # and the files of --out that the server did not write, and its own non-published ones
    inside = [out / "notes.txt", out / "tmp" / "draft.txt", out / ".vgs-serve.json"]
    for path in [*outside, *inside]:
        status, body = _file(url, path)
        assert status in (403, 404), (path, status, body[:80])
    # the one test video inside its folder is the one example: a copy in --out/examples, served and intact
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["ok.mp4"]
    offered = _example_files(url)
    assert [Path(f["path"]).name for f in offered] == ["ok.mp4"]
    assert Path(offered[0]["path"]).resolve().is_relative_to(out.resolve())
    status, body = _get(offered[0]["url"])
    assert status == 200 and body == (source / "videos" / "ok.mp4").read_bytes()
    status, body = _file(url, out / "examples" / "ok.mp4")
    assert status == 200 and body == (source / "videos" / "ok.mp4").read_bytes()


def test_examples_publishes_the_videos_never_the_files_beside_them(examples_server):
    url, root, _ = examples_server
    home, share, out = root / "home_like", root / "share", root / "out"
    for folder in (home, share):  # the folders of the examples, their private files, the originals
        for path in [*folder.rglob("*"), folder / ".ssh" / "id_rsa"]:
            status, _ = _file(url, path)
            assert status in (403, 404), (path, status)
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["example.mp4", "holiday.mp4"]
    offered = _example_files(url)
    assert sorted(Path(f["path"]).name for f in offered) == ["example.mp4", "holiday.mp4"]
    for f in offered:
        status, body = _get(f["url"])
        original = home / "holiday.mp4" if f["path"].endswith("holiday.mp4") else share / "example.mp4"
        assert status == 200 and body == original.read_bytes()
    assert _file(url, out / "examples" / "holiday.mp4")[0] == 200


def test_a_running_and_a_queued_request_keep_their_uploads_and_the_users_files_survive(labels_server, tmp_path):
    """--keep-minutes 0.05 (3 s): the janitor runs every second; a long request and one queued behind it (one
    generation at a time) both finish, while the user's 2-hour-old files in the existing --out stay."""
    from gradio_client import Client, handle_file

    url, root, _, _ = labels_server
    out = root / "out"
    long_video = make_video(tmp_path / "long.mp4", 15.0)
    queued_video = make_video(tmp_path / "queued.mp4", 2.0)
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    t0 = time.time()
    first = client.submit(handle_file(str(long_video)), 10, 1.0, 0, 1.0, 0, "", "melgan", api_name="/generate")
    second = client.submit(handle_file(str(queued_video)), 1, 1.0, 0, 1.0, 1, "", "melgan", api_name="/generate")
    _, info = first.result(timeout=600)
    assert info["samples"] == 10 and info["seconds"] == pytest.approx(15.0, abs=0.05)
    assert time.time() - t0 > 2 * KEEP_MINUTES * 60  # long enough for the janitor to have run meanwhile
    _, info = second.result(timeout=600)
    assert info["seconds"] == pytest.approx(2.0, abs=0.05)
    assert (out / "tmp" / "draft.txt").is_file() and (out / "notes.txt").is_file()
    # the janitor does clean: the results of both requests go once they are older than --keep-minutes
    deadline = time.time() + 60
    while any((out / "requests").iterdir()) and time.time() < deadline:
        time.sleep(1)
    assert not any((out / "requests").iterdir())
    assert (out / "tmp" / "draft.txt").is_file() and (out / "notes.txt").is_file()


def test_rejected_requests_name_the_field_and_print_one_line_in_the_console(labels_server, tmp_path):
    from gradio_client import Client, handle_file

    url, _, proc, log = labels_server
    video = make_video(tmp_path / "clip.mp4", 1.0)
    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a video\n" * 20)
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    cases = [((handle_file(str(video)), 11, 1.0, 0, 1.0, 0, "", "melgan"),
              "samples must be a whole number from 1 to 10, got 11"),
             ((handle_file(str(video)), 1, 1.0, 0, 1.0, "abc", "", "melgan"),
              f"seed must be a whole number from 0 to {2**63 - 1}, got 'abc'"),
             ((handle_file(str(video)), 1, 0, 0, 1.0, 0, "", "melgan"), "temperature must be a number > 0"),
             ((handle_file(str(fake)), 1, 1.0, 0, 1.0, 0, "", "melgan"),
              "holiday.mp4 is not a video file that ffmpeg can read")]
    for args, said in cases:
        with pytest.raises(Exception) as caught:  # gradio_client's AppError, with the server's line
            client.predict(*args, api_name="/generate")
        assert said in str(caught.value)
    # plain HTTP naming a file that was never uploaded: gradio itself refuses it, before our code runs
    body = json.dumps({"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 1, 1.0, 0, 1.0, 0, "",
                                "melgan"]}).encode()
    request = urllib.request.Request(f"{url}/gradio_api/call/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        event = json.loads(resp.read())["event_id"]
    _, stream = _get(f"{url}/gradio_api/call/generate/{event}")
    refused = "Cannot move /etc/passwd to the gradio cache dir because it was not uploaded by a user."
    assert b"event: error" in stream and refused.encode() in stream
    time.sleep(1)  # the console is a file another process writes
    console = log.read_text()
    for said in [*(said for _, said in cases), refused]:
        assert f"rejected a request: {said}" in console
    assert "Traceback" not in console and proc.poll() is None


def test_ctrl_c_stops_the_server_with_exit_130(labels_server):
    """Last in this file: it stops the "labels" server."""
    url, _, proc, log = labels_server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    lines = log.read_text().strip().splitlines()
    assert lines[-1].startswith("interrupted: vgs serve stopped; the results stay in "), lines[-3:]
    assert "Traceback" not in log.read_text() and not _alive(url)
