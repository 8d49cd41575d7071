"""Stand-in modules for importing a reference package's own code where one of its imports cannot load beside
our torch (timm and torchaudio need another torchvision/torch): only the names the code under test uses."""

from __future__ import annotations

import sys
import types


def stub_module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    """Put a module `name` with `attrs` into sys.modules for this test (undone by monkeypatch)."""
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod
