"""Small search spaces shared by the tests (configs of :class:`salnas.supernet.space.SearchSpace`).

Imported as ``from spaces import ...`` (pytest puts ``tests/`` on the path, as for
``dataset_fixtures``). Each is a plain dict, so a test may copy and override it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NARROW_SPACE", "NARROW_STAGES", "TINY_SPACE"]

# The seven Lite0 stages at a few channels each: every gene of the default space exists, and
# training, extraction and evaluation take well under a second.
NARROW_STAGES = ["e1_k3_s1_c8_r1", "e6_k3_s2_c12_r2", "e6_k5_s2_c16_r2", "e6_k3_s2_c24_r2",
                 "e6_k5_s1_c32_r2", "e6_k5_s2_c48_r2", "e6_k3_s1_c64_r1"]

NARROW_SPACE: dict[str, Any] = {
    "stem": 8,
    "stages": NARROW_STAGES,
    "resolutions": [[32, 64], [64, 96]],
    "decoder_widths": [[8, 16], [8, 16], [8, 16], [8, 16]],
}

# Three stages and one decoder level: small enough to enumerate, for plan and genome tests.
TINY_SPACE: dict[str, Any] = {
    "stem": 8,
    "stages": ["e1_k3_s1_c8_r1", "e6_k3_s2_c8_r2", "e6_k5_s2_c16_r1"],
    "kernels": [3, 5],
    "expands": [3, 6],
    "depths": [[1], [1, 2], [1]],
    "resolutions": [[32, 32], [64, 64]],
    "skip_stages": [0],
    "decoder_widths": [[8, 16]],
    "decoder_ops": ["conv3x3", "dynconv"],
    "prior_channels": 2,
}
