"""GAN loss pieces shared by image-like GAN stages (the codebook's PatchGAN; usable by others).

Conventions follow taming-transformers / SpecVQGAN: the discriminator losses average the real and fake terms
(factor 0.5), the generator's adversarial loss is -mean(D(fake)) for both "hinge" and "vanilla".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vgs_cli.config.train import TrainConfig


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))), a scalar."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean(softplus(-D(x))) + mean(softplus(D(G(z))))): the non-saturating BCE, a scalar."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}


def generator_adv_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """-mean(D(G(z))), a scalar."""
    return -logits_fake.mean()


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4, min_weight: float = 0.0) -> torch.Tensor:
    """taming's balance ||d nll / d W|| / (||d g_loss / d W|| + 1e-4) at the decoder's last weight W, clamped
    to [min_weight, max_weight] and detached. Both losses must still have their graphs (retain_graph)."""
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + 1e-4)
    return torch.clamp(weight, min_weight, max_weight).detach()


def gan_active(step: int, start: int) -> bool:
    """Whether the adversarial terms are on at optimiser step `step` (0-based steps completed so far).

    The reference multiplies by `disc_factor = 0 if global_step < disc_start else 1`; we skip the work instead."""
    return step >= start


def gan_optimizers(models: dict[str, torch.nn.Module], train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for the generator ("gen": `models["model"]`) and the discriminator ("disc"), same settings
    (the codebook and MelGAN both train this way; the names are those `ctx.backward` receives)."""
    kw = dict(lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay)
    return {"gen": torch.optim.Adam(models["model"].parameters(), **kw),
            "disc": torch.optim.Adam(models["disc"].parameters(), **kw)}
