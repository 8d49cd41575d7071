"""The package's shape: import layering (DEVELOPERS.md) and file length limits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vgs_cli.devtools import check_imports as ci

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vgs_cli"
MAX_LINES = 400


def test_package_respects_the_import_layers():
    violations = ci.find_violations(PACKAGE)
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


def test_no_file_is_over_the_line_limit():
    long = ci.long_files(PACKAGE, MAX_LINES)
    assert not long, "files over 400 lines: " + ", ".join(f"{p.relative_to(ROOT)} ({n})" for p, n in long)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_planted_violations_and_exits_1(tmp_path):
    pkg = tmp_path / "vgs_cli"
    for sub in ("", "models/", "data/", "audio/", "train/", "generate/", "prepare/", "cli/", "config/", "metrics/", "loading/", "serve/",
                "reproduce/"):
        _write(pkg, f"{sub}__init__.py", "")
    _write(pkg, "errors.py", "class VgsError(Exception):\n    pass\n")
    _write(pkg, "models/good.py", "import torch\nfrom vgs_cli.errors import VgsError\nfrom vgs_cli.audio import spec\n"
                                  "from . import other\nfrom ..config import base\n")
    _write(pkg, "models/bad.py", "from vgs_cli.cli import app\n\n\ndef f():\n    from ..train import trainer\n"
                                 "    import vgs_cli.data.shards\n")
    _write(pkg, "data/bad.py", "from vgs_cli import generate\n")
    _write(pkg, "audio/ok.py", "from vgs_cli.config import spec\n")
    _write(pkg, "train/bad.py", "from vgs_cli.cli.train import app\nfrom vgs_cli.models import gpt\n")
    _write(pkg, "generate/bad.py", "from vgs_cli.train import runner\nfrom vgs_cli.loading import models\n")
    _write(pkg, "loading/bad.py", "from vgs_cli.models import gpt\nfrom vgs_cli.metrics import fid\n")
    _write(pkg, "cli/ok.py", "from vgs_cli.train import runner\nfrom vgs_cli.models import gpt\n")
    _write(pkg, "config/bad.py", "from vgs_cli.models import gpt\n")
    _write(pkg, "serve/ok.py", "from vgs_cli.generate import engine\nfrom vgs_cli.train import runner\n")
    _write(pkg, "serve/bad.py", "from vgs_cli.loading import models\nfrom vgs_cli.cli.app import main\n")
    _write(pkg, "metrics/bad.py", "import vgs_cli.serve.page\n")
    _write(pkg, "reproduce/ok.py", "from vgs_cli.generate import scale\nfrom vgs_cli.metrics import evaluate\n"
                                   "from vgs_cli.official import fetch\n")
    _write(pkg, "reproduce/bad.py", "from vgs_cli.serve import page\nfrom vgs_cli.cli.app import main\n")
    _write(pkg, "official/bad.py", "from vgs_cli.reproduce import run\n")
    _write(pkg, "__main__.py", "from vgs_cli.cli.app import main\n")

    found = sorted((str(v.path.relative_to(pkg)), v.line, v.imported) for v in ci.find_violations(pkg))
    assert found == [
        ("config/bad.py", 1, "vgs_cli.models"),
        ("data/bad.py", 1, "vgs_cli.generate"),
        ("generate/bad.py", 1, "vgs_cli.train"),
        ("loading/bad.py", 2, "vgs_cli.metrics"),
        ("metrics/bad.py", 1, "vgs_cli.serve.page"),
        ("models/bad.py", 1, "vgs_cli.cli"),
        ("models/bad.py", 5, "vgs_cli.train"),
        ("models/bad.py", 6, "vgs_cli.data.shards"),
        ("official/bad.py", 1, "vgs_cli.reproduce"),
        ("reproduce/bad.py", 1, "vgs_cli.serve"),
        ("reproduce/bad.py", 2, "vgs_cli.cli.app"),
        ("serve/bad.py", 2, "vgs_cli.cli.app"),
        ("train/bad.py", 1, "vgs_cli.cli.train"),
    ]
    proc = subprocess.run([sys.executable, "-m", "vgs_cli.devtools.check_imports", str(pkg)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "models/bad.py:1: models must not import vgs_cli.cli" in proc.stdout
    assert "13 layering violation(s)" in proc.stderr

    _write(pkg, "models/long.py", "x = 1\n" * 12)
    assert [(p.name, n) for p, n in ci.long_files(pkg, 10)] == [("long.py", 12)]


def test_checker_passes_a_clean_tree(tmp_path):
    pkg = tmp_path / "vgs_cli"
    _write(pkg, "__init__.py", "")
    _write(pkg, "models/__init__.py", "from vgs_cli.errors import VgsError\n")
    assert ci.main([str(pkg)]) == 0
    assert ci.main([str(pkg), "--max-lines", "0"]) == 0


def test_checker_finds_planted_import_cycles(tmp_path):
    """A module must not import a module that imports it back, directly or through others, even inside a
    function (the lazy import that hid `data/shards.py` <-> `data/shard_writer.py`)."""
    pkg = tmp_path / "vgs_cli"
    for sub in ("", "data/", "cli/", "train/"):
        _write(pkg, f"{sub}__init__.py", "")
    _write(pkg, "data/a.py", "from vgs_cli.data import b\n")
    _write(pkg, "data/b.py", "def f():\n    from vgs_cli.data.a import x\n")
    _write(pkg, "cli/one.py", "from vgs_cli.cli import two\n")
    _write(pkg, "cli/two.py", "import vgs_cli.cli.three\n")
    _write(pkg, "cli/three.py", "from .one import app\n")
    _write(pkg, "train/base.py", "import torch\n")  # one direction only: no cycle
    _write(pkg, "train/top.py", "from vgs_cli.train.base import torch\nfrom vgs_cli.train import base\n")
    assert ci.find_cycles(pkg) == [["vgs_cli.cli.one", "vgs_cli.cli.two", "vgs_cli.cli.three", "vgs_cli.cli.one"],
                                   ["vgs_cli.data.a", "vgs_cli.data.b", "vgs_cli.data.a"]]
    proc = subprocess.run([sys.executable, "-m", "vgs_cli.devtools.check_imports", str(pkg)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "2 import cycle(s)" in proc.stderr
    assert "import cycle: vgs_cli.data.a -> vgs_cli.data.b -> vgs_cli.data.a" in proc.stdout
    (pkg / "data/b.py").write_text("x = 1\n")
    (pkg / "cli/three.py").write_text("app = None\n")
    assert ci.find_cycles(pkg) == [] and ci.main([str(pkg)]) == 0


def test_package_has_no_import_cycles():
    cycles = ci.find_cycles(PACKAGE)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
