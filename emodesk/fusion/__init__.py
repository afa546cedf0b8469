"""Late fusion of member probabilities: the rule (fuse), fusion.json (config), freshness (state), the
Aquila Optimizer and the weight search (optimize, search), paired data (paired)."""

from emodesk.fusion.config import FusionConfig, load_fusion_config
from emodesk.fusion.fuse import fuse
from emodesk.fusion.state import FusionState

__all__ = ["FusionConfig", "FusionState", "fuse", "load_fusion_config"]
