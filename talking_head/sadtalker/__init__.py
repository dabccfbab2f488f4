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
