"""Batch generation shared among workers: `torchrun --nproc_per_node 2` (gloo, CPU) and `--num-shards 3` write
exactly the files of a single-process run (every clip once, bit-identical on CPU), and a run whose rank was
killed resumes to the same result. Tiny untrained models, Griffin-Lim with 2 iterations: plumbing, not quality.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vgs_cli.errors import VgsError
from vgs_cli.generate.workers import Worker, check_same_run, n_units, unit_clips, unit_seed

LIMIT = 4  # clips of the tiny test split (6) used here: 4 units of 1 clip, 2 per worker of 2
SAMPLES = 2
ARGS = ["--split", "test", "--samples", str(SAMPLES), "-b", "1", "--limit", str(LIMIT), "--vocoder", "griffinlim",
        "--gl-iters", "2", "--device", "cpu"]


def test_units_are_split_among_workers_once_whatever_the_layout():
    """Every clip belongs to exactly one worker for any (ranks, shards) layout, and seeds differ per unit."""
    for n_clips, batch in [(0, 3), (1, 8), (14, 3), (145, 8)]:
        units = n_units(n_clips, batch)
        clips = [i for u in range(units) for i in unit_clips(n_clips, batch, u)]
        assert clips == list(range(n_clips))
        for world, shards in [(1, 1), (2, 1), (1, 3), (4, 3)]:
            owned = sorted(u for s in range(shards) for r in range(world)
                           for u in Worker(r, world, s, shards).units(units))
            assert owned == list(range(units)), (world, shards)
    seeds = {unit_seed(0, u) for u in range(1000)} | {unit_seed(1, u) for u in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(VgsError, match="outside 0..2"):
        Worker(shard=3, shards=3)


def test_a_folder_refuses_samples_of_another_run(tmp_path):
    prov = {"split": "test", "transformer": {"path": "/a/t.ckpt", "sha256": "aa"}, "codebook": {"sha256": "bb"},
            "vocoder": {"kind": "melgan", "sha256": "cc"}, "options": {"samples": 10, "seed": 0, "use_cache": True}}
    (tmp_path / "generation.json").write_text(json.dumps(prov))
    moved = {**prov, "transformer": {"path": "/elsewhere/t.ckpt", "sha256": "aa"},
             "options": {**prov["options"], "use_cache": False}}
    check_same_run(tmp_path, moved)  # other machine's paths, a speed-only option: the same run
    with pytest.raises(VgsError, match=r"another run \(transformer.sha256, options.samples differ\)"):
        check_same_run(tmp_path, {**prov, "transformer": {"sha256": "dd"}, "options": {"samples": 5, "seed": 0}})


def test_samples_without_a_readable_generation_json_are_refused(tmp_path):
    """Issue 25.6: with generation.json missing or unreadable the check used to be skipped, so a griffinlim
    shard joined a melgan folder silently."""
    prov = {"split": "test", "vocoder": {"kind": "griffinlim"}, "options": {"samples": 1}}
    (tmp_path / "notes.txt").write_text("mine")
    check_same_run(tmp_path, prov)  # nothing generated yet: a new run may start here
    check_same_run(tmp_path / "new", prov)
    (tmp_path / "a" / "clip_sample_0.wav").parent.mkdir()
    (tmp_path / "a" / "clip_sample_0.wav").write_bytes(b"RIFF")
    with pytest.raises(VgsError, match="holds samples but its generation.json is missing.*put that file back"):
        check_same_run(tmp_path, prov)
    for text in ["{cut", "[1, 2]"]:
        (tmp_path / "generation.json").write_text(text)
        with pytest.raises(VgsError, match="generation.json is unreadable"):
            check_same_run(tmp_path, prov)
    logs_only = tmp_path / "logs"
    (logs_only / ".parts").mkdir(parents=True)
    (logs_only / ".parts" / "worker_0-of-2.jsonl").write_text('{"id": "x", "unit": 0}\n')
    with pytest.raises(VgsError, match="generation.json is missing"):
        check_same_run(logs_only, prov)


@pytest.mark.parametrize("shards, message", [(["--shard-index", "0", "--num-shards", "0"], "--num-shards"),
                                             (["--shard-index", "-1", "--num-shards", "2"], "--shard-index"),
                                             (["--shard-index", "2", "--num-shards", "2"], "outside 0..1")])
def test_shard_options_out_of_range_are_one_line_errors(shards, message, tmp_path, vgs):
    """Issue 25: `--num-shards 0` used to generate everything (0 was taken as 1)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")  # a shard folder as far as the options' check looks
    proc = vgs("generate", str(tmp_path / "data"), "-o", str(tmp_path / "out"), *shards)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vgs_cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _torchrun(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "vgs_cli", "generate", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _files(folder: Path) -> dict[str, bytes]:
    """Every sample file (wav and mel) by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*_sample_*"))}


def _logged(folder: Path) -> list[str]:
    """Clip ids in the worker logs (complete lines only: a rank may be writing one)."""
    lines = [line for p in sorted((folder / ".parts").glob("*.jsonl")) for line in p.read_text().split("\n")[:-1]]
    return [json.loads(line)["id"] for line in lines]


@pytest.fixture(scope="module")
def setup(tiny_shards, tmp_path_factory):
    """(models folder, single-process reference output, its clip ids)."""
    from test_generate import build_models

    from vgs_cli.generate.batch import shard_ids
    from vgs_cli.generate.engine import GenerateOptions, load_bundle, resolve_models
    from vgs_cli.generate.scale import generate_split

    base = tmp_path_factory.mktemp("scale")
    models = build_models(base / "models")
    bundle = load_bundle(resolve_models(models, vocoder="griffinlim"), vocoder="griffinlim", device="cpu",
                         gl_iters=2)
    ref = base / "single"
    summary = generate_split(bundle, tiny_shards, ref, GenerateOptions(samples=SAMPLES), batch_size=1, limit=LIMIT,
                             log=lambda s: None)
    assert summary["complete"] and summary["generated"] == LIMIT
    return models, ref, shard_ids(tiny_shards, "test", LIMIT), bundle


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process_and_resume_after_a_kill(setup, tiny_shards, tmp_path):
    models, ref, ids, _ = setup
    out = tmp_path / "ddp"
    args = [str(tiny_shards), "-o", str(out), "--model", str(models), *ARGS]
    proc = _torchrun(*args)
    try:  # kill rank 1 as soon as the first clip is written: the run dies half done
        deadline = time.monotonic() + 240
        while not _logged(out):
            assert proc.poll() is None and time.monotonic() < deadline, "torchrun ended before writing a clip"
            time.sleep(0.05)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2, children
        os.kill(int(children[1]), signal.SIGKILL)
        log = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, log[-2000:]
    first = _logged(out)
    assert 1 <= len(first) < LIMIT and not (out / "samples.json").is_file()

    proc = _torchrun(*args)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-3000:]
    assert f"clips {LIMIT}, generated {LIMIT - len(first)}, skipped {len(first)} (2 workers)" in log, log[-3000:]
    assert "complete, every clip has 2 sample(s)" in log
    assert _files(out) == _files(ref)  # the same clips, each with the same samples as one process made
    assert sorted(_logged(out)) == sorted(ids)  # each clip written once over both runs and both ranks
    manifest = json.loads((out / "samples.json").read_text())
    assert manifest["complete"] and manifest["files"] == LIMIT * SAMPLES and manifest["written_twice"] == []


@pytest.mark.slow
def test_three_shards_match_one_process_and_merge_checks_the_folder(setup, tiny_shards, tmp_path):
    from vgs_cli.generate.engine import GenerateOptions
    from vgs_cli.generate.scale import generate_split

    models, ref, ids, bundle = setup
    out = tmp_path / "sharded"
    for i in (0, 1):  # two array jobs in this process (saves the start-up), the third through the CLI
        s = generate_split(bundle, tiny_shards, out, GenerateOptions(samples=SAMPLES), batch_size=1, limit=LIMIT,
                           worker=Worker(shard=i, shards=3), log=lambda s: None)
        assert not s["complete"] and s["missing"] == [2, 1][i]  # shard 0 owns units 0 and 3, shard 1 unit 1
    merge = _cli("generate", str(tiny_shards), "-o", str(out), "--limit", str(LIMIT), "--merge")
    assert merge.returncode == 2 and merge.stderr.count("\n") == 1, merge.stderr
    assert f"1 of {LIMIT} test clips lack samples" in merge.stderr

    proc = _cli("generate", str(tiny_shards), "-o", str(out), "--model", str(models), *ARGS,
                "--shard-index", "2", "--num-shards", "3")
    assert proc.returncode == 0, proc.stderr
    assert "generated 1, skipped 0 (3 workers)" in proc.stdout and "complete" in proc.stdout, proc.stdout
    merge = _cli("generate", str(tiny_shards), "-o", str(out), "--merge")  # the run's --limit by default
    assert merge.returncode == 0 and f"complete, {LIMIT} test clips x {SAMPLES} samples" in merge.stdout, merge
    assert _files(out) == _files(ref)
    assert sorted(_logged(out)) == sorted(ids)
    assert sorted(p.name for p in (out / ".parts").iterdir()) == [f"worker_{i}-of-3.jsonl" for i in range(3)]
