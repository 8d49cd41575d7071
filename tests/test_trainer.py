"""The shared trainer on toy tasks: run folder, loss, accumulation, resume, GAN ordering, guards, schedule."""

from __future__ import annotations

import json
from pathlib import Path

import _toy_task as T
import pytest
import torch

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import CheckpointError, ConfigError, DataError, VgsError
from vgs_cli.train import runner
from vgs_cli.train.trainer import Trainer
from vgs_cli.train.trainer_utils import MetricsLog, lr_factor, seed_everything


def toy(kind: str = "regression", optimizer: str = "sgd", data: dict | None = None, nan_at_step: int = -1,
        **train) -> T.ToyConfig:
    base = dict(steps=20, batch_size=8, lr=0.05, eval_every=10, log_every=5)
    return T.ToyConfig(train=TrainConfig(**{**base, **train}), data=T.ToyDataConfig(**(data or {})), kind=kind,
                       optimizer=optimizer, nan_at_step=nan_at_step)


def rows(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(cfg: T.ToyConfig, run: Path, stop_at: int | None = None) -> tuple[dict, Trainer]:
    trainer = Trainer(T.make_task(cfg), run, device="cpu")
    return trainer.fit(stop_at=stop_at), trainer


def test_fit_writes_run_folder_and_loss_drops(tmp_path):
    cfg = toy(steps=30, ckpt_every=10, keep_last=2)
    result, trainer = fit(cfg, tmp_path)
    train, valid = rows(tmp_path, "train"), rows(tmp_path, "valid")
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in valid] == [10, 20, 30]
    assert train[-1]["loss"] < 0.2 * train[0]["loss"]
    assert valid[0]["loss"] > valid[1]["loss"] > valid[2]["loss"]
    assert all(r["samples_per_s"] > 0 and r["lr"] == pytest.approx(0.05) for r in train)
    # the "_" outputs reach summarize_eval concatenated over the whole split: same MSE, all 20 samples
    assert valid[-1]["mse_collected"] == pytest.approx(valid[-1]["loss"], rel=1e-5)
    assert valid[-1]["n_collected"] == 20
    assert result["step"] == 30 and result["loss"] == pytest.approx(valid[-1]["loss"])
    assert result["train/loss"] == pytest.approx(train[-1]["loss"])

    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt", "step_20.ckpt", "step_30.ckpt"]
    last, best = load(ckpts / "last.ckpt"), load(ckpts / "best.ckpt")
    live = trainer.bare["model"].state_dict()
    assert all(torch.equal(last["state_dict"][k], v) for k, v in live.items())
    assert last["stage"] == "toy" and last["config"] == cfg.to_dict()
    assert last["extra"]["step"] == 30 and last["extra"]["data_seed"] == 1234
    assert last["extra"]["metrics"]["loss"] == pytest.approx(valid[-1]["loss"])
    assert last["train_state"]["step"] == 30 and "main" in last["train_state"]["optimizers"]
    assert best["extra"]["step"] == 30 and "train_state" not in best
    assert load(ckpts / "step_20.ckpt")["train_state"]["step"] == 20

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["stage"] == "toy" and T.ToyConfig.from_dict(saved["config"]) == cfg
    assert saved["provenance"]["classes"] == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_10.txt", "step_20.txt", "step_30.txt"]


def test_best_checkpoint_follows_best_mode(tmp_path):
    task = T.make_task(toy(steps=15, eval_every=5))
    task.best_mode = "max"  # loss only falls, so the "best" under max is the first evaluation
    Trainer(task, tmp_path, device="cpu").fit()
    valid = rows(tmp_path, "valid")
    assert [r["best"] for r in valid] == [True, False, False]
    assert load(tmp_path / "checkpoints/best.ckpt")["extra"]["step"] == 5
    assert load(tmp_path / "checkpoints/last.ckpt")["train_state"]["best"] == pytest.approx(valid[0]["loss"])


def test_grad_accumulation_equals_bigger_batch(tmp_path):
    _, a = fit(toy(steps=6, batch_size=4, grad_accum=2, eval_every=0), tmp_path / "a")
    _, b = fit(toy(steps=6, batch_size=8, grad_accum=1, eval_every=0), tmp_path / "b")
    wa, wb = a.bare["model"].state_dict(), b.bare["model"].state_dict()
    moved = (wa["linear.weight"] - load(tmp_path / "a/checkpoints/last.ckpt")["state_dict"]["linear.weight"]).abs()
    assert moved.max() == 0
    for k in wa:
        assert (wa[k] - wb[k]).abs().max() < 1e-6, k


def test_resume_matches_uninterrupted_run(tmp_path):
    # Adam + warmup/cosine + augmentation noise + a mid-epoch stop: every piece of state must come back.
    cfg = toy(optimizer="adam", data={"n_train": 60, "augment": 0.1}, steps=20, eval_every=7, log_every=5,
              schedule="cosine", warmup_steps=3, lr=0.02)
    _, full = fit(cfg, tmp_path / "full")
    fit(cfg, tmp_path / "split", stop_at=10)
    assert load(tmp_path / "split/checkpoints/last.ckpt")["train_state"]["step"] == 10
    result, resumed = fit(cfg, tmp_path / "split")
    assert result["step"] == 20
    for k, v in full.bare["model"].state_dict().items():
        assert torch.equal(v, resumed.bare["model"].state_dict()[k]), k
    state_full = full.optimizers["main"].state_dict()["state"]
    state_res = resumed.optimizers["main"].state_dict()["state"]
    assert all(torch.equal(state_full[i]["exp_avg_sq"], state_res[i]["exp_avg_sq"]) for i in state_full)
    full_rows = {r["step"]: r["loss"] for r in rows(tmp_path / "full", "train")}
    split_rows = {r["step"]: r["loss"] for r in rows(tmp_path / "split", "train")}
    assert split_rows == full_rows


def test_finished_run_is_not_trained_again(tmp_path):
    fit(toy(steps=5, eval_every=0), tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    result, _ = fit(toy(steps=5, eval_every=0), tmp_path)
    assert result["step"] == 5 and "loss" in result
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(VgsError, match=r"non-finite loss 'main' at step 7; last good checkpoint: .*last\.ckpt"):
        fit(toy(steps=20, eval_every=5, nan_at_step=7), tmp_path)
    last = load(tmp_path / "checkpoints/last.ckpt")
    assert last["extra"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert [r["step"] for r in rows(tmp_path, "valid")] == [5]
    with pytest.raises(VgsError, match="at step 1; last good checkpoint: none written yet"):
        fit(toy(steps=20, eval_every=5, nan_at_step=1), tmp_path / "fresh")
    assert not (tmp_path / "fresh/checkpoints").exists()


def test_resume_refuses_wrong_stage_and_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoints/last.ckpt"
    save_checkpoint(ckpt, stage="vocoder", config={}, state_dict={})
    with pytest.raises(CheckpointError, match="is a 'vocoder' checkpoint, expected toy"):
        fit(toy(steps=2), tmp_path)
    ckpt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(CheckpointError, match="not a readable vgs checkpoint"):
        fit(toy(steps=2), tmp_path)


def test_gan_step_order_matches_manual_update(tmp_path):
    cfg = toy(kind="gan", steps=1, eval_every=0, lr=0.1)
    task = T.make_task(cfg)
    trainer = Trainer(task, tmp_path, device="cpu")
    trainer.fit()
    # Reference: same init (the trainer seeds with train.seed), same first batch, D step then G step.
    seed_everything(cfg.train.seed)
    models = T.make_task(cfg).build_models()
    g, d = models["model"], models["disc"]
    ds = task.train_dataset()
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.train.seed))[:8]
    x, y = ds.x[idx], ds.y[idx]
    fake = g(x)
    d_grads = torch.autograd.grad(T.gan_d_loss(d, y, fake.detach()), list(d.parameters()))
    with torch.no_grad():
        for p, gr in zip(d.parameters(), d_grads, strict=True):
            p -= 0.1 * gr
    g_grads = torch.autograd.grad(T.gan_g_loss(d, y, fake), list(g.parameters()))
    with torch.no_grad():
        for p, gr in zip(g.parameters(), g_grads, strict=True):
            p -= 0.1 * gr
    for name, ref in (("model", g), ("disc", d)):
        for k, v in ref.state_dict().items():
            assert torch.allclose(trainer.bare[name].state_dict()[k], v, atol=1e-6), (name, k)
    assert task.frozen_modes == [False]  # frozen helper kept in eval mode
    assert sorted(load(tmp_path / "checkpoints/last.ckpt")["train_state"]["models"]) == ["disc"]


def test_grad_clip_bounds_the_update(tmp_path):
    lr, clip = 0.05, 1e-3
    _, trainer = fit(toy(steps=1, eval_every=0, log_every=1, grad_clip=clip, lr=lr), tmp_path)
    seed_everything(0)
    init = T.ToyModel(T.ToyModelConfig())
    delta = torch.cat([(a - b).detach().flatten() for a, b in zip(trainer.bare["model"].parameters(), init.parameters(),
                                                          strict=True)])
    assert float(delta.norm()) == pytest.approx(lr * clip, rel=1e-3)
    assert rows(tmp_path, "train")[0]["grad_norm_main"] > 100 * clip


def test_lr_schedule_formula_and_logged_values(tmp_path):
    cfg = TrainConfig(steps=10, warmup_steps=4, schedule="cosine")
    assert [lr_factor(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(7, cfg) == pytest.approx(0.5)  # halfway through the 6 post-warmup steps
    assert lr_factor(10, cfg) == pytest.approx(0.0, abs=1e-12)
    lin = TrainConfig(steps=10, schedule="linear")
    assert lr_factor(5, lin) == pytest.approx(0.5)
    fit(toy(steps=8, eval_every=0, log_every=1, schedule="linear", warmup_steps=2, lr=0.1), tmp_path)
    run_cfg = TrainConfig(steps=8, schedule="linear", warmup_steps=2)
    logged = [r["lr"] for r in rows(tmp_path, "train")]
    assert logged == pytest.approx([0.1 * lr_factor(s, run_cfg) for s in range(8)])


def test_precision_bf16_runs_and_fp16_needs_a_gpu(tmp_path):
    bf16, _ = fit(toy(steps=20, eval_every=5, precision="bf16"), tmp_path / "bf16")
    fp32, _ = fit(toy(steps=20, eval_every=5), tmp_path / "fp32")
    valid = [r["loss"] for r in rows(tmp_path / "bf16", "valid")]
    assert valid[-1] < 0.5 * valid[0]
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05) and bf16["loss"] != fp32["loss"]
    with pytest.raises(VgsError, match="fp16 needs a CUDA GPU"):
        Trainer(T.make_task(toy(precision="fp16")), tmp_path / "fp16", device="cpu")


def test_eval_batches_limits_validation_and_tiny_data_is_an_error(tmp_path):
    result, _ = fit(toy(steps=2, eval_every=0, eval_batches=1), tmp_path / "a")
    assert result["n_collected"] == 8
    with pytest.raises(VgsError, match="training split has 6 samples"):
        fit(toy(steps=2, data={"n_train": 6}), tmp_path / "b")


def test_metrics_log_writes_strict_json(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    log.write({"step": 3, "split": "valid", "loss": float("nan"), "top1": 0.5, "x": torch.tensor(2.0)})
    MetricsLog(tmp_path / "off", enabled=False).write({"step": 1})
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line) == {"step": 3, "split": "valid", "loss": None, "top1": 0.5, "x": 2.0}
    assert "NaN" not in line and not (tmp_path / "off").exists()


def test_gan_run_logs_both_losses_and_leaves_no_stale_grads(tmp_path):
    _, trainer = fit(toy(kind="gan", steps=4, eval_every=0, log_every=2), tmp_path)
    assert all(p.grad is None for m in trainer.bare.values() for p in m.parameters())
    assert all({"d_loss", "g_loss", "lr_disc", "lr_gen"} <= set(r) for r in rows(tmp_path, "train"))


# ----------------------------------------------------------------------------------------------- runner
@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setitem(runner.STAGE_MODULES, "toy", T)
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_runner_extends_a_finished_run_like_one_long_run(tmp_path, data_dir):
    first = runner.run("toy", data=data_dir, preset="tiny", run_dir=tmp_path / "a", overrides=["train.steps=10"])
    assert first["step"] == 10
    second = runner.run("toy", data=data_dir, preset=None, run_dir=tmp_path / "a", overrides=["train.steps=20"])
    once = runner.run("toy", data=data_dir, preset="tiny", run_dir=tmp_path / "b", overrides=["train.steps=20"])
    assert second["step"] == once["step"] == 20
    a, b = load(tmp_path / "a/checkpoints/last.ckpt"), load(tmp_path / "b/checkpoints/last.ckpt")
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    saved = json.loads((tmp_path / "a/config.json").read_text())
    assert saved["config"]["train"]["steps"] == 20 and saved["preset"] == "tiny"
    assert saved["data"] == str(data_dir.resolve())
    again = runner.run("toy", data=data_dir, preset="tiny", run_dir=tmp_path / "a", require_resume=True)
    assert again["step"] == 20 and again["loss"] == pytest.approx(second["loss"])


def test_runner_config_file_and_errors(tmp_path, data_dir):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"model": {"in_dim": 3}, "train": {"steps": 2}}))
    runner.run("toy", data=data_dir, preset="vas", run_dir=tmp_path / "r", config_file=cfg_file)
    saved = json.loads((tmp_path / "r/config.json").read_text())["config"]
    assert saved["model"]["in_dim"] == 3 and saved["train"]["steps"] == 2 and saved["model"]["out_dim"] == 2

    def run(**kw):
        return runner.run(**{"stage": "toy", "data": data_dir, "preset": "tiny", "run_dir": tmp_path / "new", **kw})

    with pytest.raises(VgsError, match=r"unknown preset 'huge' for toy \(choose from tiny\|vas\|vggsound\)"):
        run(preset="huge")
    with pytest.raises(VgsError, match="unknown stage 'nope'"):
        run(stage="nope")
    with pytest.raises(VgsError, match="--resume: .* has no checkpoints/last.ckpt"):
        run(require_resume=True)
    with pytest.raises(DataError, match="data folder not found"):
        run(data=tmp_path / "missing")
    with pytest.raises(VgsError, match=r"different config \(model\.in_dim\)"):
        run(run_dir=tmp_path / "r", overrides=["model.in_dim=5"])
    with pytest.raises(VgsError, match=r"different config \(train\.lr\)"):
        run(run_dir=tmp_path / "r", overrides=["train.lr=0.5"])
    cfg_file.write_text(json.dumps({"modle": {}}))
    with pytest.raises(ConfigError, match="unknown key"):
        run(config_file=cfg_file)
    cfg_file.write_text('{"model": {"in_dim": 3,}}')
    with pytest.raises(ConfigError, match="invalid JSON"):
        run(config_file=cfg_file)
    assert not (tmp_path / "new").exists()
