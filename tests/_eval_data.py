"""Labelled synthetic shards for the classifier and evaluation tests (audio only, no video: fast).

Clips come from `data.synthetic` (each class has its own sound), their mels from `audio.spec.clip_mel`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vgs_cli.audio.spec import clip_mel
from vgs_cli.config.spec import SPEC
from vgs_cli.data import shard_writer, shards, synthetic


def clip_wav(class_index: int, seed: int) -> np.ndarray:
    plan = synthetic.plan_clip(class_index, seed, SPEC.num_video_frames, SPEC.fps)
    return synthetic.render_audio(plan, SPEC.num_samples, SPEC.fps, SPEC.sample_rate, seed)


def write_class_shards(root: Path, per_split: dict[str, int], n_classes: int = 4, seed: int = 0,
                       num_shards: int = 2) -> Path:
    """`per_split[split]` clips per class in each split, ids `<class>_<split>_<k>`, labels set."""
    classes = list(synthetic.CLASSES[:n_classes])
    records = []
    for split, n in per_split.items():
        for ci in range(n_classes):
            for k in range(n):
                clip_seed = int(np.random.SeedSequence([seed, ci, k, len(split)]).generate_state(1)[0])
                wav = clip_wav(ci, clip_seed)
                records.append(shards.ClipRecord(id=f"{classes[ci]}_{split}_{k}", split=split,
                                                 mel=clip_mel(wav).numpy(), wav=wav, label=ci))
    shard_writer.write_clips(root, records, classes=classes, num_shards=num_shards)
    return root
