"""Model and trainer lookup: the plugin's own models first, then RecBole's (RecBole-GNN's pattern)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pkgutil
import re
from functools import lru_cache
from typing import Dict, List, Tuple

import recbole
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_faerec.settings import PROPS_DIR  # noqa: E402,F401  (re-exported)

_PLUGIN_SUBMODULES = ["sequential_recommender"]
_RECBOLE_SUBMODULES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
]


class ModelNotFoundError(ValueError):
    """Raised for a model name that neither the plugin nor RecBole knows."""


def _module_names(package: str) -> List[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)]


@lru_cache(maxsize=None)
def _plugin_registry() -> Dict[str, type]:
    """Classes the plugin defines, by name: every module's ``__all__`` (or its registered names).

    A module may define a family of classes (e.g. ``FAERec_<Backbone>``); it lists them in
    ``__all__``. Importing is cheap: the plugin's modules only define classes.
    """
    registry: Dict[str, type] = {}
    for sub in _PLUGIN_SUBMODULES:
        package = f"recbole_faerec.model.{sub}"
        for name in _module_names(package):
            module = importlib.import_module(f"{package}.{name}")
            for cls_name in getattr(module, "__all__", []):
                registry[cls_name] = getattr(module, cls_name)
    return registry


@lru_cache(maxsize=None)
def recbole_model_modules() -> Tuple[Tuple[str, str], ...]:
    """``(submodule, module_name)`` of every RecBole model file (no import needed)."""
    out = []
    for sub in _RECBOLE_SUBMODULES:
        for name in _module_names(f"recbole.model.{sub}"):
            out.append((sub, name))
    return tuple(out)


def plugin_model_names() -> List[str]:
    return sorted(_plugin_registry())


def _recbole_class_name(sub: str, module_name: str) -> str:
    """The class name RecBole's model module ``module_name`` defines (``sasrec`` -> ``SASRec``),
    read from its source: importing it could fail on an optional library (lightgbm, xgboost)."""
    spec = importlib.util.find_spec(f"recbole.model.{sub}")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(location, f"{module_name}.py")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for cls_name in re.findall(r"^class\s+(\w+)", f.read(), flags=re.M):
                    if cls_name.lower() == module_name:
                        return cls_name
    return module_name


def suggest_model_names(model_name: str, n: int = 5) -> List[str]:
    """The known model class names closest to ``model_name`` (compared case-insensitively), as
    the exact names to pass (``FAERec_SASRec``, ``SASRec``)."""
    candidates: Dict[str, Tuple[str, str]] = {}  # lowercased name -> (RecBole submodule, name)
    for sub, name in recbole_model_modules():
        candidates.setdefault(name, (sub, name))
    for cls_name in _plugin_registry():
        candidates[cls_name.lower()] = ("", cls_name)
    close = difflib.get_close_matches(model_name.lower(), list(candidates), n=n, cutoff=0.5)
    return [candidates[c][1] if not candidates[c][0] else _recbole_class_name(*candidates[c])
            for c in close]


def get_model(model_name: str) -> type:
    """Return the model class for ``model_name``: the plugin's own first, then RecBole's.

    Unlike :func:`recbole.utils.get_model`, an unknown name ends in a :class:`ModelNotFoundError`
    that suggests the closest names, and never in an import error from an optional library that an
    unrelated RecBole model needs (lightgbm, xgboost).
    """
    registry = _plugin_registry()
    if model_name in registry:
        return registry[model_name]
    module_name = model_name.lower()
    for sub, name in recbole_model_modules():
        if name != module_name:
            continue
        module = importlib.import_module(f"recbole.model.{sub}.{name}")
        if hasattr(module, model_name):
            return getattr(module, model_name)
        # Right module, wrong capitalisation: RecBole needs the exact class name.
        matches = [
            attr
            for attr in dir(module)
            if attr.lower() == module_name and isinstance(getattr(module, attr), type)
        ]
        if matches:
            raise ModelNotFoundError(
                f"Unknown model '{model_name}': model names are case-sensitive, did you mean "
                f"'{matches[0]}'?"
            )
    from recbole_faerec.model.llm_item import UNWRAPPABLE  # filled as the families were made

    if model_name in UNWRAPPABLE:
        raise ModelNotFoundError(UNWRAPPABLE[model_name])
    close = suggest_model_names(model_name)
    hint = f" Close names: {', '.join(close)} (class names are case-sensitive)." if close else ""
    raise ModelNotFoundError(
        f"Unknown model '{model_name}': it is neither a recbole_faerec model "
        f"({', '.join(plugin_model_names()) or 'none yet'}) nor a RecBole {recbole.__version__} "
        f"model.{hint}"
    )


def get_trainer(model_type, model_name: str) -> type:
    """The model's own ``trainer_class``, or the plugin's ``<model_name>Trainer``, else RecBole's
    choice (``<model_name>Trainer`` in RecBole, else its ``Trainer``)."""
    registry = _plugin_registry()
    if model_name in registry and getattr(registry[model_name], "trainer_class", None):
        return registry[model_name].trainer_class
    try:
        return getattr(importlib.import_module("recbole_faerec.trainer"), model_name + "Trainer")
    except (ImportError, AttributeError):
        return recbole_get_trainer(model_type, model_name)
