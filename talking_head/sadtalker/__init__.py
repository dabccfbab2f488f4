"""SadTalker engine: networks that load the official SadTalker checkpoints key for key.

Nothing is loaded at import; see :mod:`.loader` and :mod:`.engine`.
"""

from .config import SadTalkerConfig
from .engine import MotionCoeffs, SadTalkerEngine, SadTalkerOptions, SourceCoeffs, blink_sequence
from .loader import (CheckpointError, build_networks, clear_cache, load_sadtalker, required_files,
                     sadtalker_available)

__all__ = ["SadTalkerConfig", "SadTalkerEngine", "SadTalkerOptions", "SourceCoeffs", "MotionCoeffs",
           "blink_sequence", "CheckpointError", "build_networks", "clear_cache", "load_sadtalker",
           "required_files", "sadtalker_available"]

# What is verified without the real files: every module's state_dict matches the official key
# table (names, shapes, dtypes; 1305 renderer-file keys + 18 per mapping file) and loads strictly.
# What is not: numerical agreement with SadTalker's outputs (layer semantics are re-derived from
# the published architecture; see the docstrings for each choice, e.g. grid_sample with
# align_corners=False, nearest upsampling, pi ~= 3.14 in the rotation, antialiased bicubic
# instead of PIL for the 224 alignment crop).
