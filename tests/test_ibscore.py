"""IB-score: ImageBind-huge is not in vgs yet; asking for it is one line (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from vgs_cli.errors import VgsError
from vgs_cli.metrics.av_metrics import AVPair, ib_scores


def test_ib_score_is_refused_with_one_line():
    pair = AVPair("clip", "clip_sample_0.wav", Path("clip.mp4"), Path("clip_sample_0.wav"))
    with pytest.raises(VgsError) as err:
        ib_scores([pair], weights_dir=None, device="cpu")
    assert err.value.exit_code == 2 and "\n" not in str(err.value) and "IB-score" in str(err.value)
