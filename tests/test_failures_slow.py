"""Issue 18, slow part, in the CLI's terms (a real `vgs` subprocess: exit code, the last stderr line, files;
the re-runs and the uninterrupted reference runs go through the in-process `vgs` fixture, which gives the
same exit code and output without another interpreter importing torch):

- Ctrl-C (SIGINT) during `train`, `prepare` and batch `generate` exits 130 with one line saying what was kept,
  and re-running the same command ends with exactly what an uninterrupted run makes;
- a full disk (a small tmpfs in a user+mount namespace, `unshare -Urm`; skipped where not permitted) stops
  `prepare`, `train` and `generate` with exit 1 and "no space left" + the user's path, keeps what was
  finished, and the re-run completes once there is space (the tmpfs is remounted bigger);
- read-only (a tmpfs remounted read-only) and permission-denied outputs (`unshare -U`: an unprivileged user,
  since chmod does not stop root) give their one line too.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _eval_data import write_class_shards
from test_generate import build_models, make_video

from vgs_cli.audio.io import read_wav

pytestmark = pytest.mark.slow
PY = [sys.executable, "-m", "vgs_cli"]


def last_line(text: str) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    assert not any("Traceback" in ln for ln in lines), text[-3000:]
    return lines[-1] if lines else ""


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *map(str, args)], capture_output=True, text=True, timeout=600)


def interrupted(args: list, ready, tmp_path: Path, timeout: float = 300) -> tuple[int, str]:
    """Start `vgs ARGS`, send SIGINT once `ready()` is true; (exit code, last stderr line)."""
    err = tmp_path / f"stderr_{time.monotonic_ns()}.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([*PY, *map(str, args)], stdout=subprocess.DEVNULL, stderr=fh)
        t0 = time.monotonic()
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"finished (rc {proc.returncode}) before it could be interrupted: {err.read_text()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                proc.kill()
                pytest.fail("never became ready to interrupt")
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=300)
    return code, last_line(err.read_text())


# ---------------------------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_during_train_saves_and_the_rerun_matches_an_uninterrupted_run(tmp_path, vgs):
    data = write_class_shards(tmp_path / "data", {"train": 4, "valid": 1}, n_classes=2, num_shards=1)
    cmd = ["train", "vggishish", "--data", data, "--steps", "8", "-b", "2", "--set", "train.log_every=1"]
    run_dir = tmp_path / "run"
    metrics = run_dir / "metrics.jsonl"
    code, line = interrupted([*cmd, "-o", run_dir], lambda: metrics.is_file() and metrics.read_text().strip(),
                             tmp_path)
    assert code == 130
    m = re.fullmatch(r"interrupted: at step (\d+)/8; (.+) saved; re-run the same command to resume", line)
    assert m and Path(m.group(2)) == run_dir / "checkpoints" / "last.ckpt", line
    step = int(m.group(1))
    assert 1 <= step < 8
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["train_state"]["step"] == step
    resumed = vgs(*map(str, cmd), "-o", str(run_dir))
    assert resumed.returncode == 0 and f"resuming vggishish at step {step}/8" in resumed.stderr
    assert vgs(*map(str, cmd), "-o", str(tmp_path / "straight")).returncode == 0
    a = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["train_state"]["step"] == b["train_state"]["step"] == 8
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])


def _videos(folder: Path, n: int, seconds: float = 1.0) -> Path:
    for k in range(n):
        make_video(folder / ("a" if k % 2 else "b") / f"clip_{k}.mp4", seconds + 0.1 * k, audio=True)
    return folder


def _shard_arrays(root: Path) -> dict[str, dict[str, np.ndarray]]:
    from vgs_cli.data.shards import iter_clips

    return {c["id"]: {"mel": c["mel"], "wav": c["wav"], **{f"feats/{k}": v for k, v in c["feats"].items()}}
            for c in iter_clips(root, fields=("id", "mel", "wav", "feats"))}


def test_ctrl_c_during_prepare_keeps_clips_and_the_rerun_completes(tmp_path, vgs):
    src = _videos(tmp_path / "src", 4)
    cmd = ["prepare", "folder", src, "--preset", "tiny", "--image-size", "64", "-q"]
    out = tmp_path / "ds"
    code, line = interrupted([*cmd, "-o", out], lambda: any(out.glob(".work/*/*/*.npz")), tmp_path)
    assert code == 130
    m = re.fullmatch(r"interrupted: (\d+) finished clip\(s\) kept in .+; re-run the same command to resume", line)
    assert m and 1 <= int(m.group(1)) < 4, line
    again = vgs(*map(str, cmd), "-o", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{m.group(1)} of 4 clips already computed" in again.stdout
    assert vgs(*map(str, cmd), "-o", str(tmp_path / "straight")).returncode == 0
    a, b = _shard_arrays(out), _shard_arrays(tmp_path / "straight")
    assert sorted(a) == sorted(b) and len(a) == 4
    assert all(np.array_equal(a[i][k], b[i][k]) for i in b for k in b[i])
    assert not (out / "failures.jsonl").read_text().strip()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.mktemp("models"))


def test_ctrl_c_during_batch_generate_keeps_wavs_and_the_rerun_completes(tmp_path, models, vgs):
    src = _videos(tmp_path / "src", 4)
    cmd = ["generate", src, "--model", models, "--seed", "3"]
    out = tmp_path / "gen"
    code, line = interrupted([*cmd, "-o", out], lambda: any(out.rglob("*.wav")), tmp_path)
    assert code == 130
    assert line == f"interrupted: the finished clips in {out} are kept; re-run the same command to generate the rest"
    assert 1 <= len(list(out.rglob("*.wav"))) < 4
    assert vgs(*map(str, cmd), "-o", str(out)).returncode == 0
    assert vgs(*map(str, cmd), "-o", str(tmp_path / "straight")).returncode == 0
    wavs = sorted(p.relative_to(out) for p in out.rglob("*.wav"))
    assert wavs == sorted(p.relative_to(tmp_path / "straight") for p in (tmp_path / "straight").rglob("*.wav"))
    assert len(wavs) == 4
    assert all(np.array_equal(read_wav(out / w, None)[0], read_wav(tmp_path / "straight" / w, None)[0]) for w in wavs)
    assert not list(out.rglob(".*.tmp"))


# ------------------------------------------------------------------------------- full / read-only disks

@pytest.fixture(scope="module")
def namespace(tmp_path_factory) -> Path:
    """A folder where a user+mount namespace can mount a tmpfs (skip with the reason where not permitted)."""
    mnt = tmp_path_factory.mktemp("mnt")
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mnt} && touch {mnt}/x"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user+mount namespace here: {probe.stderr.strip()[:200]}")
    return mnt


def in_namespace(mnt: Path, tmp_path: Path, size: str, steps: list[tuple[str, list]], flags: str = "-Urm",
                 between: dict[int, str] | None = None) -> list[tuple[int, str]]:
    """Mount a `size` tmpfs on `mnt`, run each `vgs` step (a shell line from `between` before step i), then
    copy the tmpfs to tmp_path/after. Returns (exit code, last stderr line) per step."""
    lines = ["set -u", f"mount -t tmpfs -o size={size} tmpfs {mnt} || exit 99"]
    for i, (_, args) in enumerate(steps):
        lines.append((between or {}).get(i, ":"))
        cmd = shlex.join([*PY, *map(str, args)])
        lines.append(f"{cmd} > {tmp_path}/out{i} 2> {tmp_path}/err{i}; echo $? > {tmp_path}/rc{i}")
    lines.append(f"cp -a {mnt} {tmp_path}/after")
    proc = subprocess.run(["unshare", flags, "sh", "-c", "\n".join(lines)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [(int((tmp_path / f"rc{i}").read_text()), last_line((tmp_path / f"err{i}").read_text()))
            for i in range(len(steps))]


def test_full_disk_during_generate(namespace, tmp_path, models):
    src = _videos(tmp_path / "src", 3)
    out = namespace / "gen"
    cmd = ["generate", src, "-o", out, "--model", models]
    grow = f"mount -o remount,size=16m {namespace}"
    # 160 KiB: room for the first clip's wav + mel (~90 KiB), not the second's
    (rc1, line1), (rc2, _) = in_namespace(namespace, tmp_path, "160k", [("full", cmd), ("space", cmd)],
                                          between={1: grow})
    assert rc1 == 1 and "no space left on the device holding" in line1 and str(out) in line1, line1
    assert ".tmp" not in line1
    assert rc2 == 0
    after = tmp_path / "after" / "gen"
    assert len(list(after.rglob("*.wav"))) == 3 and not list(after.rglob(".*.tmp"))


def test_full_disk_during_prepare(namespace, tmp_path):
    src = _videos(tmp_path / "src", 3)
    out = namespace / "ds"
    cmd = ["prepare", "folder", src, "-o", out, "--preset", "tiny", "--image-size", "64", "-q"]
    # 3 MiB: one clip's piece (~2.3 MB) fits, the second does not
    (rc1, line1), (rc2, _) = in_namespace(namespace, tmp_path, "3m", [("full", cmd), ("space", cmd)],
                                          between={1: f"mount -o remount,size=64m {namespace}"})
    assert rc1 == 1 and re.search(rf"cannot write clip \S+ into {out}: no space left on the device holding {out}", line1), line1
    assert rc2 == 0
    assert "1 of 3 clips already computed" in (tmp_path / "out1").read_text()  # the first run's clip was kept
    after = tmp_path / "after" / "ds"
    assert json.loads((after / "manifest.json").read_text())["splits"] and not (after / "failures.jsonl").read_text().strip()
    assert sum(json.loads((after / "manifest.json").read_text())["splits"].values()) == 3


def test_full_disk_while_assembling_a_shard(namespace, tmp_path):
    """Issue 25: the shard's own write used to print the one line, then 8 h5py "Exception ignored ... Traceback"
    blocks and segfault (exit 139), and a clip's chunks written by a dropped dataset handle could be lost
    silently. The pieces sit on a roomy tmpfs mounted at OUT/.work, so only the assembly meets the full disk."""
    src = _videos(tmp_path / "src", 3)
    out, keep = namespace / "ds", tmp_path / "keep"
    cmd = ["prepare", "folder", src, "-o", out, "--preset", "tiny", "--image-size", "64", "-q"]
    pieces_apart = f"mkdir -p {out}/.work && mount -t tmpfs -o size=64m tmpfs {out}/.work"
    # free space: the pieces move back into OUT (prepare removes OUT/.work at the end: no mount point there)
    space = (f"mkdir {keep} && cp -a {out}/.work/. {keep}/ && umount {out}/.work && "
             f"mount -o remount,size=64m {namespace} && cp -a {keep}/. {out}/.work/")
    # 18 MiB: the shard writer's 16 MiB reserve and about one clip of the 5.5 MB shard
    (rc1, line1), (rc2, _) = in_namespace(namespace, tmp_path, "18m", [("full", cmd), ("space", cmd)],
                                          between={0: pieces_apart, 1: space})
    err = (tmp_path / "err0").read_text()
    assert rc1 == 1 and err == f"{line1}\n" and "Exception ignored" not in err, err[-3000:]
    assert line1 == f"error: cannot write {out / 'shard_0-of-1.h5'}: no space left on the device holding {out} " \
                    "(free some space, then re-run the same command to continue)"
    assert len(list(keep.rglob("*.npz"))) == 3  # every clip's piece was kept
    assert rc2 == 0 and "3 of 3 clips already computed" in (tmp_path / "out1").read_text()
    after = tmp_path / "after" / "ds"
    assert sum(json.loads((after / "manifest.json").read_text())["splits"].values()) == 3
    assert not list(after.rglob("*.tmp")) and not (after / ".work").exists()


def test_full_disk_during_train_keeps_the_last_checkpoint(namespace, tmp_path):
    data = write_class_shards(tmp_path / "data", {"train": 2, "valid": 1}, n_classes=2, num_shards=1)
    run_dir = namespace / "run"
    cmd = ["train", "vggishish", "--data", data, "-o", run_dir, "-b", "2"]
    fill = f"head -c 100m /dev/zero > {namespace}/ballast 2>/dev/null; true"
    steps = [("first", [*cmd, "--steps", "2"]), ("full", [*cmd, "--steps", "4"]), ("space", [*cmd, "--steps", "4"])]
    results = in_namespace(namespace, tmp_path, "16m", steps, between={1: fill, 2: f"rm {namespace}/ballast"})
    (rc0, _), (rc1, line1), (rc2, _) = results
    assert rc0 == 0 and rc1 == 1 and rc2 == 0
    assert "no space left on the device holding" in line1 and str(run_dir) in line1 and ".tmp" not in line1, line1
    assert "resuming vggishish at step 2/4" in (tmp_path / "err2").read_text()  # step 2's checkpoint survived
    ckpt = torch.load(tmp_path / "after" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["train_state"]["step"] == 4
    assert not list((tmp_path / "after" / "run").rglob(".*.tmp"))


def test_read_only_and_permission_denied_outputs(namespace, tmp_path, models):
    video = make_video(tmp_path / "v.mp4", 1.0)
    out = namespace / "out.wav"
    ro = f"mount -o remount,ro {namespace}"
    ((rc, line),) = in_namespace(namespace, tmp_path, "1m", [("ro", ["generate", video, "-o", out, "--model", models])],
                                 between={0: ro})
    assert rc == 1 and line == f"error: cannot write {out}: {namespace} is on a read-only file system " \
                               "(choose a writable output folder)"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # `unshare -U` without a mapping: an unprivileged user, for whom the mode bits count (root ignores them)
    proc = subprocess.run(["unshare", "-U", *PY, "generate", str(video), "-o", str(locked / "out.wav"),
                           "--model", str(models)], capture_output=True, text=True, timeout=600)
    if "Permission denied" in proc.stderr and "unshare" in proc.stderr:
        pytest.skip("unprivileged user namespaces are not permitted here")
    assert proc.returncode == 1
    assert last_line(proc.stderr) == (f"error: cannot write {locked / 'out.wav'}: {locked} is not writable "
                                      "(permission denied; choose a folder you can write to)")
