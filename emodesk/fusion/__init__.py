"""Late fusion of member probabilities (and, later, the Aquila weight search)."""

from emodesk.fusion.config import FusionConfig, load_fusion_config
from emodesk.fusion.fuse import fuse
from emodesk.fusion.state import FusionState

__all__ = ["FusionConfig", "FusionState", "fuse", "load_fusion_config"]
