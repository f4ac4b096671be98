"""params.yaml composed from conf/ by Hydra, exactly as `dvc exp run` composes it.

conf/config.yaml holds every section with the embedded default's values and a `defaults` list
that picks one preset from conf/preset/ (`# @package _global_` files merged over it: mappings
key by key, lists replaced). DVC's Hydra support (`hydra.enabled` in .dvc/config) composes it
into params.yaml before every `dvc exp run`, so the values a preset sets are DVC parameters:
`dvc params diff` and `dvc exp show` list them. This module does the same composition for
`make params` and `cajnn retrain`, with the same Hydra calls and the same YAML dump, so that
params.yaml is byte for byte what DVC would write.

    python -m cajnn.config.compose [OVERRIDE ...]     e.g.  preset=paper  train.lr=5e-4
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONF_DIR = "conf"  # DVC's default hydra.config_dir
CONFIG_NAME = "config"  # DVC's default hydra.config_name
PRESET_GROUP = "preset"
PARAMS_FILE = "params.yaml"


def preset_dir(root: Path) -> Path:
    return root / CONF_DIR / PRESET_GROUP


def known_presets(root: Path) -> list[str]:
    return sorted(p.stem for p in preset_dir(root).glob("*.yaml"))


def render(root: Path, overrides: Sequence[str] = ()) -> str:
    """The YAML text of the composed parameters (what DVC writes to params.yaml)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from cajnn.config.base import ConfigError

    conf = (root / CONF_DIR).resolve()
    if not (conf / f"{CONFIG_NAME}.yaml").is_file():
        raise ConfigError(f"{conf / CONFIG_NAME}.yaml: no such file (params.yaml is composed from conf/)")
    try:
        with initialize_config_dir(str(conf), version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except HydraException as exc:
        # e.g. an unknown preset: Hydra lists the available options itself.
        raise ConfigError(f"composing {CONF_DIR}/ with {list(overrides)}: {exc}") from None
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def compose_params(root: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed parameters as plain data (read back as `load_params` reads params.yaml)."""
    import yaml

    from cajnn.config.base import _Loader

    return yaml.load(render(root, overrides), Loader=_Loader) or {}


def write_params(root: Path, overrides: Sequence[str] = (), out: Path | None = None) -> Path:
    """Compose and write params.yaml atomically; the parameters are validated before."""
    import yaml

    from cajnn.atomic import write_text_atomic
    from cajnn.config import Params, from_dict
    from cajnn.config.base import _Loader

    text = render(root, overrides)
    from_dict(Params, yaml.load(text, Loader=_Loader) or {})
    out = out or root / PARAMS_FILE
    write_text_atomic(out, text)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cajnn.config.compose", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as after `dvc exp run -S`")
    args = parser.parse_args(argv)
    from cajnn.config import load_params

    out = write_params(Path.cwd(), args.overrides)
    print(f"{out.name}: composed from {CONF_DIR}/ (preset {load_params(out).preset})")


if __name__ == "__main__":
    main()
