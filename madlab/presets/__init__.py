"""Packaged sweep files: `madlab sweep --preset NAME` runs `madlab/presets/NAME.toml`."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from madlab.config import ConfigError


def available() -> list[str]:
    """Names of the packaged presets."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    """The file of preset `name`; ConfigError naming the available ones if there is none."""
    path = resources.files(__name__) / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(available()) or 'none'}")
    return Path(str(path))


def load(name: str):
    """The `SweepSpec` of preset `name` (its [sweep] name defaults to the preset's name)."""
    from madlab.sweep import SweepSpec

    return SweepSpec.from_toml(preset_path(name))
