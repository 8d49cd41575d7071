"""The av-benchmark audio networks vgs runs equal the maintained packages' own forward on the same input and
weights (<= 1e-5): PaSST (hear21passt), Cnn14 16 kHz (panns-inference), VGGish (torchvggish); torchaudio's
resampler and Kaldi mel banks written out equal their formulas."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from _stubs import stub_module

from vgs_cli.audio.resample import resample
from vgs_cli.models.cnn14 import Cnn14
from vgs_cli.models.passt import PaSST, PaSSTConfig, PasstMel, kaldi_mel_banks


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (make install puts it in)")
    return Path(list(spec.submodule_search_locations)[0])


_stub = stub_module


def _np_kaldi_banks(n_mels, n_fft, sr, fmin, fmax):
    """Kaldi's triangular mel banks from their definition (mel = 1127 ln(1 + f/700), num_bins + 1 steps)."""
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(fmin), mel(fmax)
    d = (hi - lo) / (n_mels + 1)
    m = mel(sr / n_fft * np.arange(n_fft // 2))[None]
    left = lo + np.arange(n_mels)[:, None] * d
    return np.maximum(0, np.minimum((m - left) / d, (left + 2 * d - m) / d))


def test_kaldi_mel_banks_equal_the_formula():
    ours = kaldi_mel_banks(128, 1024, 32000.0, 0.0, 15000.0).numpy()
    assert ours.shape == (128, 512)
    np.testing.assert_allclose(ours, _np_kaldi_banks(128, 1024, 32000.0, 0.0, 15000.0), atol=2e-4)


def test_resample_keeps_a_tone_and_torchaudios_length():
    sr, f = 44100, 1000.0
    x = torch.sin(2 * math.pi * f * torch.arange(sr) / sr)
    y = resample(x, sr, 16000)
    assert y.shape[-1] == math.ceil(16000 * sr / sr)
    ref = torch.sin(2 * math.pi * f * torch.arange(16000) / 16000)
    assert torch.allclose(y[200:-200], ref[200:-200], atol=2e-3)  # away from the zero-padded edges
    assert resample(torch.ones(2, 3, 440), 44100, 32000).shape == (2, 3, 320)  # ceil(440 * 320 / 441)


def test_passt_equals_hear21passt(monkeypatch):
    root = _package_dir("hear21passt")
    # the package's ViT helpers import timm for a download helper only (timm needs another torch): stub it
    _stub(monkeypatch, "timm")
    _stub(monkeypatch, "timm.models")
    _stub(monkeypatch, "timm.models._hub", download_cached_file=None)
    assert (root / "models" / "passt.py").is_file()
    monkeypatch.delitem(sys.modules, "hear21passt.models.passt", raising=False)
    mod = importlib.import_module("hear21passt.models.passt")
    torch.manual_seed(0)
    theirs = mod.PaSST(img_size=(128, 998), stride=10, patch_size=16, in_chans=1, num_classes=527, embed_dim=64,
                       depth=2, num_heads=4, distilled=True).eval()
    ours = PaSST(PaSSTConfig(embed_dim=64, depth=2, num_heads=4)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    spec_in = torch.randn(2, 1, 128, 1000)
    with torch.no_grad():
        logits_t, emb_t = theirs(spec_in)
        logits_o, emb_o = ours(spec_in)
    assert torch.allclose(emb_o, emb_t, atol=1e-5) and torch.allclose(logits_o, logits_t, atol=1e-5)


def test_passt_front_end_equals_hear21passt(monkeypatch):
    root = _package_dir("hear21passt")
    # AugmentMelSTFT imports torchaudio for the Kaldi banks (formula-checked above) and the training-time masks
    kaldi = types.SimpleNamespace(get_mel_banks=lambda n, nfft, sr, lo, hi, **_: (
        torch.tensor(_np_kaldi_banks(n, nfft, sr, lo, hi), dtype=torch.float32), None))
    _stub(monkeypatch, "torchaudio", compliance=types.SimpleNamespace(kaldi=kaldi),
          transforms=types.SimpleNamespace(FrequencyMasking=lambda *a, **k: torch.nn.Identity(),
                                           TimeMasking=lambda *a, **k: torch.nn.Identity()))
    spec = importlib.util.spec_from_file_location("_h21_pre", root / "models" / "preprocess.py")
    pre = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pre)
    theirs = pre.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                                timem=192, fmin=0.0, fmax=None, fmin_aug_range=10, fmax_aug_range=2000).eval()
    wave = torch.randn(2, 32000) * 0.1
    with torch.no_grad():
        np.testing.assert_allclose(PasstMel(PaSSTConfig())(wave)[:, 0].numpy(), theirs(wave).numpy(), atol=1e-4)


def _panns_models(monkeypatch):
    root = _package_dir("panns_inference")
    # the package's __init__ runs config.py, which downloads a label file with wget: load models.py alone
    pkg = types.ModuleType("panns_inference")
    pkg.__path__ = [str(root)]
    monkeypatch.setitem(sys.modules, "panns_inference", pkg)
    for name in ("panns_inference.models", "panns_inference.pytorch_utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("panns_inference.models")


def test_cnn14_equals_panns_inference(monkeypatch):
    models = _panns_models(monkeypatch)
    torch.manual_seed(0)
    theirs = models.Cnn14(16000, 512, 160, 64, 50, 8000, 527).eval()
    ours = Cnn14().eval()
    # our own front end is built like torchlibrosa's (the file overwrites it anyway)
    for key in ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                "logmel_extractor.melW"):
        assert torch.allclose(ours.state_dict()[key], theirs.state_dict()[key], atol=1e-5), key
    state = theirs.state_dict()
    for k, v in state.items():  # non-trivial BatchNorm statistics
        if k.endswith("running_mean"):
            v.normal_(0, 0.5)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
    theirs.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        out = theirs(wave)
        logits, emb = ours(wave)
    assert torch.allclose(emb, out["embedding"], atol=1e-5)
    assert torch.allclose(torch.sigmoid(logits), out["clipwise_output"], atol=1e-5)


def test_vggish_is_torchvggish_without_its_last_relu():
    pytest.importorskip("torchvggish")
    from torchvggish import torchvggish as tv
    from torchvggish import vggish_input

    from vgs_cli.loading.metric_nets import build_vggish

    torch.manual_seed(0)
    theirs = tv.VGG(tv.make_layers(), postprocess=False).eval()
    ours = build_vggish().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = vggish_input.waveform_to_examples(np.random.default_rng(0).normal(0, 0.1, 32000), 16000)
    with torch.no_grad():
        a, b = ours(x.detach()), theirs(x.detach())
    assert torch.allclose(torch.relu(a), b, atol=1e-6) and (a < 0).any()  # the same layers, no final ReLU
