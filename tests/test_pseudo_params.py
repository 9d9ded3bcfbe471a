"""Each stage's settings object: its defaults are the config's, its bounds are checked on
construction, and ``check_config`` is nothing but building all of them."""
import dataclasses

import numpy as np
import pytest

from zip_d2.config import get_cfg
from zip_d2.pseudo import check_config
from zip_d2.pseudo.discovery_labels import DiscoveryLabelParams
from zip_d2.pseudo.instances import DiscoveryParams
from zip_d2.pseudo.pipeline import STAGE_PARAMS


@pytest.mark.parametrize("section, params", STAGE_PARAMS, ids=[s or "PSEUDO" for s, _ in
                                                                 STAGE_PARAMS])
def test_each_stage_reads_its_config_section_and_its_defaults_are_the_configs(section, params):
    p = get_cfg().PSEUDO
    node = p[section] if section else p
    assert params.from_config(node) == params()
    for f in dataclasses.fields(params):
        assert f.name.upper() in node, f"{params.__name__}.{f.name} has no config key"


def test_bounds_are_checked_with_the_config_key_in_one_line():
    with pytest.raises(ValueError, match=r"^PSEUDO\.DISCOVERY\.MIN_INSIDE_RATIO must be in "
                                         r"\[0\.0, 1\.0\], got 1\.5$"):
        DiscoveryParams(min_inside_ratio=1.5)
    for bad in (float("nan"), "3", True):
        with pytest.raises(ValueError, match=r"PSEUDO\.DISCOVERY\.MAX_BOX_TO_AREA must be"):
            DiscoveryParams(max_box_to_area=bad)
    assert DiscoveryParams(min_instance_cells=np.int64(5)).min_instance_cells == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        DiscoveryParams().top_clusters = 3


def test_discovery_label_params_extend_the_discovery_stage_and_name_bare_fields():
    params = DiscoveryLabelParams(min_inscribed_radius=2.0)
    assert isinstance(params, DiscoveryParams) and params.min_instance_cells == 23
    # The discovery fields keep their bounds, named by field (these are the tool's flags).
    with pytest.raises(ValueError, match="^max_box_to_area must be >= 1.0, got 0.5$"):
        DiscoveryLabelParams(max_box_to_area=0.5)


def test_check_config_refuses_a_bad_value_in_any_section():
    cfg = get_cfg()
    check_config(cfg)
    for section, params in STAGE_PARAMS:
        bounded = [f for f in dataclasses.fields(params)
                   if f.metadata.get("low") is not None or f.metadata.get("choices")]
        assert bounded, section
        for f in bounded:
            bad = cfg.clone()
            node = bad.PSEUDO[section] if section else bad.PSEUDO
            node[f.name.upper()] = ("not one of them" if f.metadata.get("choices")
                                    else f.metadata["low"] - 1)
            key = f"PSEUDO.{section + '.' if section else ''}{f.name.upper()}"
            with pytest.raises(ValueError, match=f"^{key} must be"):
                check_config(bad)
