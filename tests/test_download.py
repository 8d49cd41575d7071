"""Resumable, checksummed HTTP download against a local server (no internet)."""

from __future__ import annotations

import hashlib
import os

import pytest
from _http_server import serve

from vgs_cli.pipeline.download import ChecksumError, DownloadError, download

DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA).hexdigest()
SHA = hashlib.sha256(DATA).hexdigest()


def _gets(srv, path):
    return [h for (m, p, h) in srv.requests if m == "GET" and p == path]


def test_plain_download_verifies_md5_and_sha256(tmp_path):
    with serve({"/f.bin": DATA}) as srv:
        out = download(srv.url("/f.bin"), tmp_path / "f.bin", md5=MD5, sha256=SHA, backoff=0.01)
    assert out.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "f.bin.lock"]


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
    with pytest.raises(DownloadError, match="giving up"):  # nothing listens on port 9
        download("http://127.0.0.1:9/x", tmp_path / "y", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(DownloadError, match="source file not found"):
        download(str(tmp_path / "nope.tar"), tmp_path / "z")


def test_local_path_and_file_url_are_copied_and_checked(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    assert download(str(src), tmp_path / "a.bin", md5=MD5).read_bytes() == DATA
    assert download(src.as_uri(), tmp_path / "b.bin", sha256=SHA).read_bytes() == DATA
    with pytest.raises(ChecksumError):
        download(str(src), tmp_path / "c.bin", sha256="f" * 64)
