"""Stage settings as frozen dataclasses, each with its bounds beside its fields.

A stage declares its settings once, in its own module::

    @dataclass(frozen=True)
    class DiscoveryParams(StageParams):
        config_key: ClassVar[str] = "PSEUDO.DISCOVERY"
        top_clusters: int = setting(20, low=1)

Construction checks every bound (a one-line ValueError naming the config key), and
``DiscoveryParams.from_config(cfg.PSEUDO.DISCOVERY)`` reads field ``top_clusters`` from key
``TOP_CLUSTERS`` (Detectron2's ``from_config`` idiom). A new setting is a field here, a key in
``zip_d2/config.py`` and, where it differs from the default, a line in the presets.
"""
from __future__ import annotations

import numbers
from dataclasses import field, fields
from typing import Any, ClassVar, Optional, Sequence

__all__ = ["StageParams", "setting"]


def setting(default: Any, *, low: Optional[float] = None, high: Optional[float] = None,
            choices: Optional[Sequence] = None):
    """A dataclass field with its allowed values: ``low <= value <= high`` (None: unbounded)
    or ``value in choices``."""
    return field(default=default, metadata={"low": low, "high": high,
                                            "choices": None if choices is None else
                                            tuple(choices)})


class StageParams:
    """Base of the stage parameter dataclasses: bounds checked on construction, ``from_config``.

    ``config_key``: the config node the fields come from (e.g. "PSEUDO.DISCOVERY"); errors name
    ``<config_key>.<FIELD>``, or the bare field name when it is empty (settings not in the
    config).
    """

    config_key: ClassVar[str] = ""

    def __post_init__(self):
        self.validate()

    @classmethod
    def key(cls, name: str) -> str:
        """How errors name field ``name``."""
        return f"{cls.config_key}.{name.upper()}" if cls.config_key else name

    def validate(self) -> None:
        """Raise ValueError (one line) for a value outside its declared bounds."""
        for f in fields(self):
            value = getattr(self, f.name)
            choices, low, high = (f.metadata.get(k) for k in ("choices", "low", "high"))
            if choices is not None and value not in choices:
                raise ValueError(f"{self.key(f.name)} must be one of "
                                 f"{', '.join(map(str, choices))}, got {value!r}")
            if low is None and high is None:
                continue
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value or (
                    (low is not None and value < low) or (high is not None and value > high)):
                bounds = f">= {low}" if high is None else (
                    f"<= {high}" if low is None else f"in [{low}, {high}]")
                raise ValueError(f"{self.key(f.name)} must be {bounds}, got {value!r}")

    @classmethod
    def from_config(cls, node):
        """The settings from a config node (field ``name`` <- key ``NAME``), checked."""
        return cls(**{f.name: node[f.name.upper()] for f in fields(cls) if f.init})
