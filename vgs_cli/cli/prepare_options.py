"""Options shared by the `vgs prepare` commands (folder, synthetic, vas, vggsound): one definition each."""

import typer

from vgs_cli.cli import checks

EXTRACTOR = typer.Option([], "--extractor", "-e", help="Visual features: resnet50 or efficientnet_lite0 (repeatable).")
WEIGHTS = typer.Option([], "--visual-weights", help="Extractor weights file: PATH (one extractor) or NAME=PATH (repeatable).")
RANDOM = typer.Option(False, "--random-visual-weights", help="Random extractor weights (pipeline tests only; recorded).")
IMAGE_SIZE = typer.Option(None, "--image-size", min=16, help="Centre crop fed to the extractor (default 224; tiny 128).")
JOBS = typer.Option(1, "--jobs", "-j", min=1, help="Parallel worker processes.")
SHARD_INDEX = typer.Option(None, "--shard-index", min=0, help="Make only this shard (one machine of several).")
NUM_SHARDS = typer.Option(None, "--num-shards", min=1, help="Total shards (default: clips / clips-per-shard).")
MODE = typer.Option(None, "--mode", help="Clips shorter than 10 s: loop (the reference) or pad.")
SET = typer.Option([], "--set", help="Override a prepare setting, e.g. --set clips_per_shard=256 (repeatable).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
FEATURE_PRECISION = typer.Option(None, "--feature-precision", help="Visual features in fp32 (default: as the official ones), bf16 or int8 (faster on CPUs with AVX512-BF16 / VNNI; recorded in the shards).")
DEVICE = typer.Option(None, "--device", callback=checks.device, help="Where the extractors run: cpu or cuda (default: cuda when available).")
