"""Where the plugin's YAML defaults live, and reading a setting with its YAML default.

Defaults live in the YAML files under ``props/`` only. A plugin model's ``Config`` always loads its
YAMLs, so model code reads ``config[key]`` as RecBole's models do. The plugin's evaluation and
training hooks also serve models built with RecBole's own ``Config``, which never loads
``props/overall.yaml``; they read a key with :func:`setting`, which falls back to that file's value
(then RecBole's own ``overall.yaml``), never to a default written in code.

A leaf module: it imports nothing of the plugin, so every part of it can import this.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Dict

import yaml

PACKAGE_ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_props_dir() -> str:
    """The plugin's YAML defaults: ``recbole_faerec/props/`` inside an installed wheel (setup.py
    maps the source tree's ``props/`` there), else ``props/`` beside the package in a source
    checkout or an editable install."""
    installed = os.path.join(PACKAGE_ROOT, "props")
    if os.path.isfile(os.path.join(installed, "overall.yaml")):
        return installed
    return os.path.join(os.path.dirname(PACKAGE_ROOT), "props")


PROPS_DIR = _find_props_dir()


class _Loader(yaml.SafeLoader):
    """YAML as RecBole's ``Config`` reads it (``1e-12`` and ``-.inf`` are floats)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f.read(), Loader=_Loader) or {}


@lru_cache(maxsize=None)
def _defaults() -> Dict[str, Any]:
    """RecBole's ``overall.yaml`` overridden by the plugin's ``props/overall.yaml``."""
    merged: Dict[str, Any] = {}
    try:
        import recbole

        recbole_overall = os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml")
        if os.path.isfile(recbole_overall):
            merged.update(load_yaml(recbole_overall))
    except ImportError:  # pragma: no cover - recbole is a dependency
        pass
    merged.update(load_yaml(os.path.join(PROPS_DIR, "overall.yaml")))
    return merged


def default(key: str) -> Any:
    """The value ``props/overall.yaml`` (or RecBole's ``overall.yaml``) gives ``key``, or None."""
    return _defaults().get(key)


def config_value(config, key: str) -> Any:
    """``config[key]``, or None when it is missing: RecBole ``Config`` objects (which answer None
    for unknown keys) and plain dicts alike."""
    try:
        return config[key]
    except KeyError:
        return None


def setting(config, key: str) -> Any:
    """``config[key]``, or its YAML default (:func:`default`) when the config lacks it or holds
    None (a ``Config`` built by RecBole alone, a plain dict)."""
    value = config_value(config, key)
    return default(key) if value is None else value


class SettingError(ValueError):
    """A setting that cannot take effect: an unknown value, a value out of its range, a
    combination that contradicts itself. One line that names the setting; the entry point prints
    it and exits with status 2."""


def choice(config, key: str, values) -> Any:
    """``config[key]`` when it is one of ``values``; anything else is a :class:`SettingError`."""
    value = config[key]
    if value not in values:
        raise SettingError(f"{key} '{value}' is unknown; expected one of {tuple(values)}")
    return value


__all__ = ["PROPS_DIR", "SettingError", "choice", "config_value", "default", "load_yaml", "setting"]
