"""The discovery-made labeller's settings (:mod:`zip_d2.pseudo.discovery_labels`), apart from
its code so that tools/make_discovery_labels.py builds one flag per field without torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .instances import DiscoveryParams
from .params import setting

__all__ = ["DISCOVERY_LABEL", "DiscoveryLabelParams"]

# How every file and every result made by the discovery-made labeller is labelled.
DISCOVERY_LABEL = "discovery-made, constructed features"


@dataclass(frozen=True)
class DiscoveryLabelParams(DiscoveryParams):
    """Settings of the discovery-made labeller; grid quantities are in grid cells.

    The discovery step's own settings are inherited from :class:`DiscoveryParams` (the fields and
    bounds the Zip labeler reads from PSEUDO.DISCOVERY), so this object is what
    :func:`discover_instances` takes; the fields below are the labeller's, around it.
    """

    config_key: ClassVar[str] = ""  # not a config section: errors name the field (the flag)

    # The paper's 100 cells are 0.46 % of its 128x171 grid; 23 cells are 0.45 % of 80x64.
    min_instance_cells: int = setting(23, low=1)
    # Image pixels per grid cell. 2 on the 160x128 synthetic scenes gives an 80x64 grid on
    # which objects (radius 9-22 px) are 9-22 cells across, as COCO's medium objects (32-96 px)
    # are on Zip's grid (3.75 px per cell for a 640x480 image). Masks are 2x2-pixel blocks.
    stride: int = setting(2, low=1)
    num_clusters: int = setting(20, low=2)
    kmeans_iters: int = setting(100, low=1)
    # boundary_aware_features: prototype spread, noise scale and its smoothing (cells).
    feature_dim: int = setting(16, low=1)
    separation: float = setting(3.0, low=0)
    noise: float = setting(2.0, low=0)
    noise_sigma: float = setting(2.0, low=0)
    # Class activation: blur of the class's cell coverage (cells) and Zip's region threshold.
    activation_sigma: float = setting(1.0, low=0)
    activation_ratio: float = setting(0.7, low=0)
    # Cross-class duplicate removal, as the Zip labeler's PSEUDO.SCORE.NMS_IOU.
    nms_iou: float = setting(0.5, low=0, high=1)

    @property
    def rule(self) -> str:
        if self.min_inscribed_radius > 0:
            return f"thinness rule (inscribed radius >= {self.min_inscribed_radius:g} cells)"
        return "paper rule (bbox/area < 3)"
