"""Training step times at paper size for the stages bench/codebook.py does not cover: the GPT, MelGAN and
Melception (random weights and inputs; one warm-up step, then the median of two timed steps)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.timing import seconds


def _gpt_step() -> float:
    from vgs_cli.config.transformer import PRESETS
    from vgs_cli.models.gpt import GPT

    cfg = PRESETS["vggsound"].model  # 24 x 1024, vocab 1024, 212-frame 2048-d condition
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    codes = torch.randint(0, cfg.vocab_size, (1, cfg.num_tokens))
    feats = torch.randn(1, cfg.feat_frames, cfg.feat_dim)

    def step() -> None:
        logits = model(codes[:, :-1], feats)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), codes.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return seconds(step, repeats=2)


def _melgan_step() -> float:
    from vgs_cli.config.vocoder import PRESETS
    from vgs_cli.models.melgan import Generator, MultiScaleDiscriminator

    cfg = PRESETS["vggsound"]
    gen, disc = Generator(cfg.model), MultiScaleDiscriminator(cfg.disc)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    mel, wav = torch.rand(1, 80, 32), torch.rand(1, 1, 8192) * 2 - 1  # one 8192-sample segment

    def step() -> None:
        fake = gen(mel)
        d_loss = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean()
                     for r, f in zip(disc(wav), disc(fake.detach()), strict=True))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = sum(-f[-1].mean() for f in disc(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    return seconds(step, repeats=2)


def _melception_step() -> float:
    from vgs_cli.config.melception import PRESETS
    from vgs_cli.models.melception import Melception

    model = Melception(PRESETS["vggsound"].model.replace(num_classes=309)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.rand(2, 80, 848), torch.randint(0, model.cfg.num_classes, (2,))

    def step() -> None:
        loss = F.cross_entropy(model(x)["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return seconds(step, repeats=2)


def rows() -> list[tuple[str, float, str]]:
    return [
        ("GPT train step, paper size (batch 1, 212-frame condition, AdamW)", _gpt_step(), "s/step"),
        ("MelGAN train step, paper size (batch 1, 8192 samples, D then G)", _melgan_step(), "s/step"),
        ("Melception train step, paper size (batch 2)", _melception_step(), "s/step"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
