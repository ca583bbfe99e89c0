"""RecBole's :class:`~recbole.config.Config`, aware of the plugin's models and YAML defaults.

Priority, lowest first (RecBole's own rule, with the plugin's ``props/`` slotted in as defaults):

1. RecBole's internal defaults (``overall.yaml``, the model's YAML, the dataset's YAML, its
   quick-start YAML for the model type);
2. the plugin's ``props/overall.yaml``, ``props/model/<model>.yaml``, ``props/dataset/<dataset>.yaml``
   (a plugin model may name RecBole models whose YAML it builds on in ``recbole_config_models``,
   and plugin YAMLs it shares with its family in ``plugin_config_models``, e.g. ``FAERec``, each
   followed by its per-backbone file where one exists, e.g. ``TADA_GRU4Rec.yaml``);
3. the user's ``config_file_list``, then ``config_dict``, then ``--key=value`` on the command line.

Step 2 applies to sequential models only; general, context-aware and knowledge-based RecBole models
run with RecBole's own defaults, exactly as under ``run_recbole.py``.
"""

from __future__ import annotations

import difflib
import glob
import inspect
import os
import re
from functools import lru_cache
from logging import getLogger
from typing import FrozenSet, Optional

import recbole
from recbole.config import Config as RecBoleConfig
from recbole.utils import InputType, ModelType

from recbole_faerec.settings import choice
from recbole_faerec.utils.utils import PROPS_DIR, get_model

LOSS_TYPES = ("CE", "BPR", "BCE")  # what a sequential model trains with here

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "properties")
PACKAGE_DIRS = (os.path.dirname(os.path.abspath(recbole.__file__)),
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DatasetNameError(ValueError):
    """A dataset name that is a path: RecBole builds the log file's name from it."""


def check_dataset_name(dataset) -> None:
    """``dataset`` must be a name: ``data_path`` holds the folder."""
    name = str(dataset)
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if name and name not in (".", "..") and not any(sep in name for sep in separators):
        return
    parent, base = os.path.split(os.path.normpath(name))
    example = (f" (here --data_path={parent or '.'} --dataset={base})"
               if base and base not in (".", "..") else "")
    raise DatasetNameError(
        f"dataset '{name}' is a path, not a dataset name: give the folder that holds the dataset's "
        f"folder as --data_path (data_path) and the dataset's name as --dataset{example}")


# Top-level keys of a YAML file, and the keys code reads from a config: config["key"],
# cfg.get("key"), setting(config, "key") (any helper called with the config first), "key" in config
_YAML_KEY = re.compile(r"^([A-Za-z_]\w*)\s*:", re.M)
_CODE_READS = (
    re.compile(r"\b\w*(?:config|cfg|config_dict)\s*(?:\[\s*|\.get\(\s*)[\"'](\w+)[\"']"),
    re.compile(r"\w\(\s*(?:self\.)?\w*(?:config|cfg)\w*\s*,\s*[\"'](\w+)[\"']"),
    re.compile(r"[\"'](\w+)[\"']\s+(?:not\s+)?in\s+[\w.]*(?:config|cfg)\w*\b"),
)


def _keys_read_by(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return set()
    return {key for pattern in _CODE_READS for key in pattern.findall(text)}


@lru_cache(maxsize=None)
def known_config_keys() -> FrozenSet[str]:
    """Every parameter RecBole 1.2.1 or the plugin knows: the top-level keys of RecBole's YAMLs
    (``overall``, ``model/``, ``dataset/``, ``quick_start_config/``) and of the plugin's
    ``props/``, RecBole's parameter lists, and the keys either package's code reads from a config
    (those that no YAML declares: ``benchmark_filename``, ``local_rank``, ``nproc``, ...)."""
    from recbole.utils import argument_list

    keys = set()
    for folder in (RECBOLE_PROPERTIES, PROPS_DIR):
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            with open(path, encoding="utf-8") as f:
                keys.update(_YAML_KEY.findall(f.read()))
    for name in ("general_arguments", "training_arguments", "evaluation_arguments",
                 "dataset_arguments"):
        keys.update(getattr(argument_list, name, []))
    for package in PACKAGE_DIRS:
        for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
            keys.update(_keys_read_by(path))
    return frozenset(keys)


class ConfigFileError(ValueError):
    """A ``config_file_list`` entry that is neither a file nor one of the plugin's YAMLs."""


def resolve_config_file(path: str) -> str:
    """``path`` itself when it is a file, else the plugin's ``props/<path>`` (e.g.
    ``presets/reference.yaml``, so the presets work from any directory and from a wheel)."""
    if os.path.isfile(path):
        return path
    bundled = os.path.join(PROPS_DIR, path)
    if not os.path.isabs(path) and os.path.isfile(bundled):
        return bundled
    presets = sorted(f for f in os.listdir(os.path.join(PROPS_DIR, "presets")) if f.endswith(".yaml")) \
        if os.path.isdir(os.path.join(PROPS_DIR, "presets")) else []
    raise ConfigFileError(
        f"config file '{path}' not found (neither here nor in the plugin's {PROPS_DIR}); "
        f"the plugin's presets: {', '.join('presets/' + f for f in presets) or 'none'}")


_warned_unknown_keys = set()


class Config(RecBoleConfig):
    """:class:`recbole.config.Config` with plugin model lookup and ``props/`` defaults.

    Also: a sequential model trained with ``loss_type: CE`` gets ``train_neg_sample_args: None``
    unless the user sets negatives explicitly (RecBole 1.2.1's default samples one negative and then
    rejects it for CE, so ``--model=SASRec`` would fail out of the box).
    """

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "model needs to be given: as an argument, in a config file, config dict or "
                    "on the command line (--model=SASRec)"
                )
        if isinstance(model, str):
            model = get_model(model)
        model, model_class, dataset = super()._get_model_and_dataset(model, dataset)
        check_dataset_name(dataset)
        return model, model_class, dataset

    def _load_config_files(self, file_list):
        file_list = [resolve_config_file(path) for path in (file_list or [])]
        self._config_files = file_list
        return super()._load_config_files(file_list)

    def _warn_unknown_keys(self):
        """A key the user gave (config files, config_dict, command line) that no YAML declares and
        no code reads would be silently ignored: warn, naming the closest known key (once per
        process; a DDP worker leaves it to its launcher)."""
        if "local_rank" in self.external_config_dict:
            return
        known = set(known_config_keys())
        model_file = _source_file(self.model_class)
        if model_file:  # a user's own model class reads its own keys
            known |= _keys_read_by(model_file)
        for key in self.external_config_dict:
            if not isinstance(key, str) or key in known:
                continue
            message = (f"config key '{key}' ({self._key_source(key)}) is not a parameter of RecBole "
                       f"or recbole_faerec (no YAML declares it, no code reads it): it has no "
                       f"effect. {_closest_hint(key, known)}")
            if message not in _warned_unknown_keys:
                _warned_unknown_keys.add(message)
                getLogger().warning(message)

    def _key_source(self, key) -> str:
        if key in self.cmd_config_dict:
            return "command line"
        if key in self.variable_config_dict:
            return "config_dict"
        for path in reversed(getattr(self, "_config_files", [])):
            try:
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        if re.match(rf"{re.escape(key)}\s*:", line):
                            return f"{path}, line {lineno}"
            except OSError:
                continue
        return "config file"

    def _load_internal_config_dict(self, model, model_class, dataset):
        if not os.path.isdir(PROPS_DIR):
            raise FileNotFoundError(
                f"recbole_faerec's YAML defaults are missing ({PROPS_DIR}): the installation is "
                "incomplete; reinstall the plugin ('pip install .' or 'pip install -e .' in its "
                "source checkout)"
            )
        super()._load_internal_config_dict(model, model_class, dataset)
        if model_class.type != ModelType.SEQUENTIAL:
            # The plugin's defaults are for sequential models; other RecBole models keep RecBole's
            # own (e.g. context-aware models on ml-100k need its ratings and label threshold).
            return
        files = []
        for base in getattr(model_class, "recbole_config_models", ()):
            # a RecBole backbone's YAML, or the plugin's for its own backbones (FMLPRec, ...)
            recbole_file = os.path.join(RECBOLE_PROPERTIES, "model", f"{base}.yaml")
            files.append(recbole_file if os.path.isfile(recbole_file)
                         else os.path.join(PROPS_DIR, "model", f"{base}.yaml"))
        files.append(os.path.join(PROPS_DIR, "overall.yaml"))
        family = getattr(model_class, "plugin_config_models", ())
        for base in family:
            files.append(os.path.join(PROPS_DIR, "model", f"{base}.yaml"))
        # a method's settings for one backbone (e.g. TADA_GRU4Rec.yaml, the authors' rates for
        # GRU4Rec), which its compositions share (FAERec_TADA_GRU4Rec reads it too)
        for base in family:
            for backbone in getattr(model_class, "recbole_config_models", ()):
                if f"{base}_{backbone}" != model:
                    files.append(os.path.join(PROPS_DIR, "model", f"{base}_{backbone}.yaml"))
        files.append(os.path.join(PROPS_DIR, "model", f"{model}.yaml"))
        dataset_file = os.path.join(PROPS_DIR, "dataset", f"{dataset}.yaml")
        files.append(dataset_file)
        for file in files:
            if os.path.isfile(file):
                loaded = self._update_internal_config_dict(file) or {}
                if file == dataset_file:
                    self.parameters["Dataset"] += [
                        k for k in loaded if k not in self.parameters["Dataset"]
                    ]

    def _init_device(self):
        """RecBole's device set-up; for distributed runs without CUDA, gloo on the CPU."""
        from recbole_faerec.quick_start.distributed import enable_cpu_ddp, use_gloo

        cfg = self.final_config_dict
        if "local_rank" not in cfg or not use_gloo(cfg):
            return super()._init_device()
        import torch
        import torch.distributed as dist

        enable_cpu_ddp()
        dist.init_process_group(
            backend="gloo", rank=cfg["local_rank"] + cfg["offset"], world_size=cfg["world_size"],
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}")
        cfg["gpu_id"] = str(cfg["gpu_id"])
        cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False

    def _set_default_parameters(self):
        loss_type = self.final_config_dict.get("loss_type")
        if self.final_config_dict.get("MODEL_TYPE") == ModelType.SEQUENTIAL and loss_type is not None:
            # RecBole's own models would stop with a NotImplementedError traceback
            choice(self.final_config_dict, "loss_type", LOSS_TYPES)
        if loss_type == "BCE" and not hasattr(self.model_class, "input_type"):
            # The paper's BCE with one sampled negative (plugin models): pairwise input, as BPR.
            self.final_config_dict["MODEL_INPUT_TYPE"] = InputType.PAIRWISE
        if (
            self.final_config_dict.get("MODEL_TYPE") == ModelType.SEQUENTIAL
            and self.final_config_dict.get("loss_type") == "CE"
            and not hasattr(self.model_class, "input_type")
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            self.final_config_dict["train_neg_sample_args"] = None
        self._warn_unknown_keys()
        self._check_evaluation()
        super()._set_default_parameters()
        self._check_tail_split()

    def _check_tail_split(self):
        """The tail-aware metrics average over users by their one target item: they need a
        leave-one-out split (RecBole's ``LS``); say so before training rather than after it."""
        from recbole_faerec.evaluator.metrics import uses_tail_metrics
        from recbole_faerec.evaluator.popularity import EvaluationConfigError

        split = (self.final_config_dict.get("eval_args") or {}).get("split") or {}
        if uses_tail_metrics(self) and "LS" not in split:
            raise EvaluationConfigError(
                f"the tail-aware metrics need one target item per test user, i.e. a leave-one-out "
                f"split (eval_args.split: {{'LS': 'valid_and_test'}}); this config splits by {split}")

    def _check_evaluation(self):
        """Unknown metric names and bad tail-evaluation settings, as clear errors up front."""
        from recbole.evaluator import metric_types

        from recbole_faerec.evaluator.popularity import EvaluationConfigError, check_evaluation_settings

        metrics = self.final_config_dict.get("metrics") or []
        metrics = [metrics] if isinstance(metrics, str) else metrics
        unknown = [m for m in metrics if not isinstance(m, str) or m.lower() not in metric_types]
        if unknown:
            from recbole_faerec.evaluator.metrics import METRICS

            ours = {cls.__name__ for cls in METRICS}
            builtin = sorted(n for n in metric_types if n not in {o.lower() for o in ours})
            raise EvaluationConfigError(
                f"unknown metric(s) {unknown} in 'metrics'; RecBole's: {', '.join(builtin)}; "
                f"recbole_faerec's: {', '.join(sorted(ours))} (names are case-insensitive)")
        check_evaluation_settings(self)
        from recbole_faerec.evaluator.history import check_history_settings

        check_history_settings(self)
        from recbole_faerec.trainer.schedule import check_eval_start

        check_eval_start(self)


def _source_file(cls) -> Optional[str]:
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None


def _closest_hint(key: str, known) -> str:
    same_case = [k for k in known if k.lower() == key.lower()]
    close = same_case or difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"Did you mean '{close[0]}'?" if close else "No parameter has a similar name."
