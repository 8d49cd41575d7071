"""Resumable, checksummed HTTP download against a local server (no internet), and the two real dataset
download paths built on it: the VAS archive and yt-dlp for VGGSound."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _http_server import serve

from vgs_cli.data.download import ChecksumError, DownloadError, NetworkUnreachable, _locked, download
from vgs_cli.data.shards import iter_clips, read_manifest
from vgs_cli.prepare.sources import VAS_CLASSES, load_split, parse_clip_name, vggsound

DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA).hexdigest()
SHA = hashlib.sha256(DATA).hexdigest()


def _gets(srv, path):
    return [h for (m, p, h) in srv.requests if m == "GET" and p == path]


def test_plain_download_verifies_md5_and_sha256(tmp_path):
    with serve({"/f.bin": DATA}) as srv:
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, sha256=SHA, backoff=0.01)
    assert out.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # the lock file is removed by its last holder


def test_interrupted_download_resumes_with_range(tmp_path):
    seen = []
    with serve({"/f.bin": DATA}, cut_after={"/f.bin": 100_000}) as srv:
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, backoff=0.01, chunk_size=4096,
                       progress=lambda n, total: seen.append((n, total)))
        gets = _gets(srv, "/f.bin")
    assert out.read_bytes() == DATA
    assert len(gets) == 2
    assert "Range" not in gets[0]
    assert gets[1]["Range"] == "bytes=100000-"
    assert gets[1]["If-Range"] == '"' + MD5 + '"'  # the ETag of the first response
    assert seen[-1] == (len(DATA), len(DATA))
    assert not (tmp_path / "f.bin.part").exists()


class _Killed(BaseException):
    """Stands in for Ctrl-C / a killed job in the middle of a transfer."""


def _kill_after(limit):
    def progress(n, total):
        if n >= limit:
            raise _Killed

    return progress


def test_part_left_by_a_killed_run_is_resumed_by_the_next_run(tmp_path):
    with serve({"/f.bin": DATA}) as srv:
        with pytest.raises(_Killed):
            download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, chunk_size=4096,
                     progress=_kill_after(120_000))
        kept = (tmp_path / "f.bin.part").stat().st_size
        assert 120_000 <= kept < len(DATA)
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, backoff=0.01)
        gets = _gets(srv, "/f.bin")
    assert out.read_bytes() == DATA
    assert gets[-1]["Range"] == f"bytes={kept}-"


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    with serve({"/f.bin": DATA}, cut_after={"/f.bin": 50_000}, ignore_range=True) as srv:
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, backoff=0.01)
        assert _gets(srv, "/f.bin")[1]["Range"] == "bytes=50000-"  # asked, got a 200, started over
    assert out.read_bytes() == DATA


def test_changed_file_on_server_is_not_spliced(tmp_path):
    # A .part from an older version of the file: If-Range fails, the server sends the new file whole.
    new = os.urandom(200_000)
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        with pytest.raises(_Killed):
            download(srv.url("/f.bin"), dest, chunk_size=4096, progress=_kill_after(70_000))
        srv.files["/f.bin"] = new
        out = download(srv.url("/f.bin"), dest, md5=hashlib.md5(new).hexdigest(), backoff=0.01)
        assert _gets(srv, "/f.bin")[-1]["If-Range"] == '"' + MD5 + '"'  # the old ETag was offered
    assert out.read_bytes() == new


def test_checksum_mismatch_is_an_error_and_nothing_is_kept(tmp_path):
    dest = tmp_path / "f.bin"
    with serve({"/f.bin": DATA}) as srv:
        with pytest.raises(ChecksumError, match=f"md5 mismatch .*got {MD5}.*deleted"):
            download(srv.url("/f.bin"), dest, md5="0" * 32, backoff=0.01)
    assert not dest.exists()
    assert not (tmp_path / "f.bin.part").exists()


def test_existing_good_file_needs_no_network_and_bad_one_is_refetched(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(DATA)
    assert download("http://127.0.0.1:9/never-contacted", dest, md5=MD5) == dest
    dest.write_bytes(b"stale")
    with serve({"/f.bin": DATA}) as srv:
        download(srv.url("/f.bin"), dest, md5=MD5, backoff=0.01)
    assert dest.read_bytes() == DATA


def test_http_errors_and_bad_arguments_are_user_errors(tmp_path):
    with serve({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(srv.url("/missing.tar"), tmp_path / "x", backoff=0.01)
    with pytest.raises(DownloadError, match="32 hex digits"):
        download("http://127.0.0.1:9/x", tmp_path / "x", md5="abc")
    with pytest.raises(NetworkUnreachable, match="cannot reach 127.0.0.1: .*connection refused"):  # port 9: no one
        download("http://127.0.0.1:9/x", tmp_path / "y", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(DownloadError, match="source file not found"):
        download(str(tmp_path / "nope.tar"), tmp_path / "z")


def test_offline_says_the_network_is_unreachable_and_leaves_no_lock(tmp_path):
    """Issue 25: offline, the error was "giving up on https://... after 5 retries (URLError: Name or service not
    known)" and downloads/<file>.lock stayed behind."""
    dest = tmp_path / "downloads" / "x.bin"
    with pytest.raises(NetworkUnreachable) as info:  # .invalid never resolves: fails at once, no network used
        download("http://vgs-no-such-host.invalid/x.bin", dest, retries=1, backoff=0.01)
    assert str(info.value) == ("cannot reach vgs-no-such-host.invalid: the network is unreachable (name resolution "
                               f"failed; 2 attempts); check the connection, or put a copy of the file at {dest}")
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(NetworkUnreachable, match=r"\(name resolution failed; 2 attempts\)"):
        download("http://vgs-no-such-host.invalid/x.bin", dest, retries=5, backoff=0.01)  # one retry, not five
    dest.write_bytes(DATA)  # the copy it asks for is then used as it is
    assert download("http://vgs-no-such-host.invalid/x.bin", dest, md5=MD5) == dest


def test_the_lock_admits_one_job_at_a_time_while_its_file_comes_and_goes(tmp_path):
    """Each holder removes the lock file; a waiter that locked the removed file must retry on the new one."""
    import threading
    import time

    dest, inside, most, errors = tmp_path / "f.bin", [0], [0], []

    def job() -> None:
        try:
            for _ in range(20):
                with _locked(dest):  # a new open file each time: flock contends between threads too
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    time.sleep(0.001)
                    inside[0] -= 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and most[0] == 1
    assert not (tmp_path / "f.bin.lock").exists()


def test_local_path_and_file_url_are_copied_and_checked(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    assert download(str(src), tmp_path / "a.bin", md5=MD5).read_bytes() == DATA
    assert download(src.as_uri(), tmp_path / "b.bin", sha256=SHA).read_bytes() == DATA
    with pytest.raises(ChecksumError):
        download(str(src), tmp_path / "c.bin", sha256="f" * 64)


# ------------------------------------------------------------------ real dataset download paths


def _cli():
    import typer

    from vgs_cli.cli import prepare_datasets

    app = typer.Typer()
    prepare_datasets.register(app)
    return app


def _run(args: list[str]):
    from typer.testing import CliRunner

    return CliRunner().invoke(_cli(), args)


FAST = ["--preset", "tiny", "--image-size", "32", "-q"]  # real (offline) extractor weights, tiny frames


@pytest.fixture(scope="module")
def synthetic_mp4s(tmp_path_factory) -> dict[str, bytes]:
    """Three short real mp4 clips (H.264 + AAC) keyed by class index."""
    from vgs_cli.data.synthetic import make_clip
    from vgs_cli.data.video import write_video

    root = tmp_path_factory.mktemp("clips")
    out = {}
    for k in range(3):
        frames, wav = make_clip(k, seed=k, duration_s=2.0, size=32)
        out[k] = write_video(root / f"{k}.mp4", frames, wav=wav).read_bytes()
    return out


@pytest.mark.slow
def test_vas_archive_download_checksum_resume_and_prepare(tmp_path, synthetic_mp4s):
    names = [load_split("vas_valid")[0], load_split("vas_train")[4000], load_split("vas_train")[-1]]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:  # RegNet-like nesting: VAS/<class>/videos/<id>.mp4
        for k, name in enumerate(names):
            cls, vid = name.split("/")
            zf.writestr(f"VAS/{cls}/videos/{vid}.mp4", synthetic_mp4s[k])
    data = archive.getvalue()
    out = tmp_path / "vas"
    with serve({"/VAS.zip": data}, cut_after={"/VAS.zip": len(data) // 3}) as srv:
        bad = _run(["vas", "-o", str(out), "--url", srv.url("/VAS.zip"), "--md5", "0" * 32, *FAST])
        assert isinstance(bad.exception, ChecksumError), bad.output
        assert [p.name for p in (out / "source").iterdir()] == []  # no archive, no .part, no lock
        assert not list(out.glob("shard_*"))
        srv.cut_after["/VAS.zip"] = len(data) // 3  # the next transfer is cut short once more
        ok = _run(["vas", "-o", str(out), "--url", srv.url("/VAS.zip"), "--md5", hashlib.md5(data).hexdigest(),
                   "-j", "1", *FAST])
        gets = [h for (m, p, h) in srv.requests if m == "GET"]
    assert ok.exit_code == 0, ok.output
    cut = f"bytes={len(data) // 3}-"
    # run 1: cut, resumed, then refused (md5); run 2: starts from zero (nothing corrupt is trusted), cut, resumed
    assert ["Range" in g and g["Range"] == cut for g in gets] == [False, True, False, True]
    man = read_manifest(out)
    assert man["classes"] == list(VAS_CLASSES) and man["clips"] == 3 and man["failures"] == 0
    assert man["splits"] == {"train": 2, "valid": 1, "test": 0}
    clips = {c["id"]: c for c in iter_clips(out)}
    assert set(clips) == set(names)
    for name in names:
        c = clips[name]
        assert c["label"] == VAS_CLASSES.index(name.split("/")[0])
        assert c["split"] == ("valid" if name in load_split("vas_valid") else "train")
        assert c["mel"].shape == (80, 860) and c["mel"].max() > 0.3 and np.abs(c["wav"]).max() > 0.01
        assert c["feats"]["efficientnet_lite0"].shape == (215, 1280)


def _csv(path: Path, rows: list[tuple]) -> Path:
    """A headerless vggsound.csv; labels with commas quoted."""
    text = "".join(f'{y},{s},{chr(34) + lab + chr(34) if "," in lab else lab},{sp}\n' for y, s, lab, sp in rows)
    path.write_text(text)
    return path


def _zero_start(split: str, k: int) -> str:
    return [n for n in load_split(split) if n.endswith("_0_10000")][k]


@pytest.mark.slow
def test_vggsound_yt_dlp_download_failures_and_resume(tmp_path, synthetic_mp4s):
    present = [_zero_start("vggsound_train", 0), _zero_start("vggsound_valid", 0), "testclip_01_0_10000"]
    missing = [_zero_start("vggsound_train", 1), "testclip_02_0_10000"]
    labels = ["dog barking", "people coughing", "church bell ringing, chiming", "dog barking", "lions roaring"]
    rows = [(parse_clip_name(n)[0], 0, lab, "test" if n.startswith("testclip") else "train")
            for n, lab in zip(present + missing, labels, strict=True)]
    csv_path = _csv(tmp_path / "vggsound.csv", rows)
    files = {f"/{parse_clip_name(n)[0]}.mp4": synthetic_mp4s[k] for k, n in enumerate(present)}
    out = tmp_path / "vgg"
    with serve(files) as srv:
        args = ["vggsound", "-o", str(out), "--csv", str(csv_path), "--url-template", srv.base + "/{ytid}.mp4",
                "--retries", "1", "--backoff", "0.01", "--timeout", "60", "--download-jobs", "2", *FAST]
        res = _run(args)
        assert res.exit_code == 0, res.output
        first = len(srv.requests)
        again = _run(args)  # resume: downloaded clips are not fetched again, failures are retried
        fetched_again = {p for (_, p, _) in srv.requests[first:]}
    assert again.exit_code == 0, again.output
    assert fetched_again == {f"/{parse_clip_name(n)[0]}.mp4" for n in missing}  # only the failures retried
    man = read_manifest(out)
    assert man["classes"] == ["church bell ringing, chiming", "dog barking", "lions roaring", "people coughing"]
    assert man["splits"] == {"train": 1, "valid": 1, "test": 1} and man["failures"] == 0
    clips = {c["id"]: c for c in iter_clips(out)}
    assert set(clips) == set(present)
    assert [clips[n]["label"] for n in present] == [1, 3, 0]
    assert all(np.abs(clips[n]["wav"]).max() > 0.01 for n in present)
    failed = vggsound.read_failures(out)
    assert set(failed) == set(missing) and all("404" in f["reason"] for f in failed.values())


def test_fetch_clip_backoff_and_permanent_errors(tmp_path, monkeypatch):
    clip = vggsound.PlannedClip("abc_0_10000", "abc", 0, 0, "test")
    answers = iter(["ERROR: HTTP Error 503: busy", "timed out after 5 s", None])
    monkeypatch.setattr(vggsound, "_one_attempt", lambda c, dest, opts: next(answers))
    sleeps: list[float] = []
    opts = vggsound.FetchOptions(retries=3, backoff_s=2.0)
    assert vggsound.fetch_clip(clip, tmp_path, opts, sleep=sleeps.append) == ("downloaded", None)
    assert sleeps == [2.0, 4.0]  # exponential backoff between the three attempts

    monkeypatch.setattr(vggsound, "_one_attempt", lambda c, dest, opts: "ERROR: [youtube] abc: Video unavailable")
    sleeps.clear()
    assert vggsound.fetch_clip(clip, tmp_path, opts, sleep=sleeps.append)[0] == "failed"
    assert sleeps == []  # permanent: no retry

    (tmp_path / "abc_0_10000.mp4").write_bytes(b"done")
    assert vggsound.fetch_clip(clip, tmp_path, opts)[0] == "present"


def test_clip_timeout_kills_the_whole_process_group(tmp_path):
    import sys
    import time

    pidfile = tmp_path / "child.pid"
    child = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(60)"
    parent = f"import subprocess,sys,time; subprocess.Popen([sys.executable,'-c',{child!r}]); time.sleep(60)"
    code, _ = vggsound._run_killable([sys.executable, "-c", parent], timeout_s=1.5)
    assert code is None
    pid = int(pidfile.read_text())

    def alive() -> bool:  # a killed process nobody reaped yet is a zombie: dead for our purpose
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    for _ in range(100):  # the grandchild (ffmpeg's role) must be gone too
        if not alive():
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")
