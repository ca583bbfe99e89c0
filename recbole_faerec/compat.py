"""RecBole 1.2.1 on today's stack (numpy 2, pandas 3, torch >= 2.6, setuptools >= 82).

RecBole 1.2.1 (the latest release) predates numpy 2, pandas 3's copy-on-write and string semantics,
and torch's ``weights_only`` default. ``import recbole_faerec`` calls :func:`apply` once, which
applies each fix below. Every fix is small, named, idempotent and scoped as narrowly as possible
(RecBole's own functions, not pandas or torch for everyone). ``tests/test_compat.py`` shows, for each
one, the failure it prevents by running RecBole with that fix switched off.

Switch a fix off with the environment variable ``RECBOLE_FAEREC_COMPAT_SKIP`` (a comma-separated
list of names from :data:`FIXES`), e.g. to measure its effect (``benchmarks/bench_epoch.py``).

The last six are not about the stack; they are every change the plugin makes to RecBole itself, in
one place. ``tail_metrics`` and ``history_exclusion`` teach its evaluator the paper's protocol. The
other four, ``trainer_epoch``, ``loss_names``, ``bce_loss`` and ``train_positions``, they make every RecBole trainer (a user's own ``recbole.trainer.Trainer`` too)
tell a model its training epoch and log the parts of its loss by name, which the plugin's models
rely on (``tests/test_trainer_epoch.py``), and let RecBole's sequential models train with the paper's BCE loss and on every position of each
user's sequence, so a backbone can be compared with its FAERec under one protocol
(``tests/test_bce_loss.py``, ``tests/test_train_positions.py``).

=======================  ====================================================================
name                     what breaks without it
=======================  ====================================================================
``numpy_aliases``        ``np.float_``/``np.complex_``/``np.unicode_`` (used by every ``Config``)
                         and ``np.bool8`` (ray) were removed in numpy 2: ``AttributeError``.
``pkg_resources``        ray (imported by ``recbole.quick_start``) imports ``pkg_resources``,
                         which setuptools >= 82 no longer ships: ``ModuleNotFoundError``.
``anomaly_mode``         ``recbole/model/sequential_recommender/sine.py`` switches on
                         ``torch.autograd.set_detect_anomaly(True)`` for the whole process at
                         import: every model trains about 2x slower.
``pandas_seq_agg``       pandas 3's ``Series.agg(len)`` returns the Series length instead of the
                         length of each element: loading any ``token_seq`` field (item text!)
                         fails with ``ValueError: Length of values ... does not match``.
``pandas_cow_fillna``    pandas 3's copy-on-write turns ``df[field].fillna(..., inplace=True)``
                         into a no-op: missing ``token``/``float`` values stay NaN and an empty
                         ``token_seq`` field crashes in ``str.split``.
``checkpoint_load``      torch >= 2.6 loads with ``weights_only=True``; RecBole's checkpoints
                         pickle the whole ``Config``, so reloading the best model fails with
                         ``UnpicklingError``.
``collector_cpu``        ``Collector.get_data_struct`` calls ``.cpu()`` on ints and Counters:
                         ItemCoverage, GiniIndex, AveragePopularity and TailPercentage crash
                         (RUCAIBox/RecBole#2191).
``trainer_epoch``        ``Trainer._train_epoch`` never tells the model its epoch: a model whose
                         loss depends on it (FAERec's curriculum, eq. 11, via ``set_epoch``) stays
                         at epoch 0 for the whole run under every RecBole trainer. It also starts
                         validation at ``eval_start_epoch`` (RecBole validates from epoch 0;
                         :mod:`recbole_faerec.trainer.schedule`).
``loss_names``           a loss returned as a tuple is logged as ``train_loss1``, ``train_loss2``;
                         with it, a model's ``loss_names`` (FAERec: ``rec``, ``align``) are used.
``load_data_and_model``  ``recbole.quick_start.load_data_and_model`` fails on every checkpoint
                         under torch >= 2.6 (``weights_only``), and on plugin models it asks
                         ``recbole.utils.get_model`` (``No module named 'lightgbm'``); routed to
                         :func:`recbole_faerec.quick_start.reload.load_data_and_model`.
``train_positions``      RecBole trains sequential models on prefixes only (one target per
                         row); ``train_positions: all`` trains a causal backbone on every
                         position of each user's sequence, as the original SASRec and the
                         FAERec authors' code (:mod:`recbole_faerec.model.positions`). Also
                         ``padding_side: left``: SASRec with the padding before the items, as
                         theirs (RecBole pads after them).
``bce_loss``             RecBole's sequential models know ``loss_type`` CE and BPR only; the
                         paper's (and its authors' baselines') BCE with one sampled negative
                         raises ``NotImplementedError``. With it, every model with a BPR branch
                         takes ``loss_type: BCE`` (:func:`recbole_faerec.model.loss.bce_capable`).
``tail_metrics``         RecBole knows no head/tail, group or coverage metric, and its
                         ``Collector`` keeps neither the target items nor their popularity: the
                         plugin's metrics join its registry and every RecBole trainer collects
                         with :class:`recbole_faerec.evaluator.TailCollector`.
``history_exclusion``    RecBole's full-sort evaluation of sequential models always ranks the
                         user's own history items; ``eval_exclude_history`` takes them out
                         (:mod:`recbole_faerec.evaluator.history`).
=======================  ====================================================================
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.metadata
import importlib.util
import os
import sys
import types
import warnings
from typing import Callable, Dict, List

SKIP_ENV = "RECBOLE_FAEREC_COMPAT_SKIP"

_applied: List[str] = []


def _skipped() -> set:
    return {s.strip() for s in os.environ.get(SKIP_ENV, "").split(",") if s.strip()}


# --------------------------------------------------------------------------------------------
# numpy 2: removed aliases
# --------------------------------------------------------------------------------------------
def _fix_numpy_aliases() -> None:
    """Restore the aliases numpy 2 removed that RecBole and ray still use.

    ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_`` and ``np.unicode_`` and
    then sets ``np.float``, ``np.int``, ``np.bool``... itself; ``Interaction`` and the metrics use
    those. We set both groups, so RecBole code used before the first ``Config()`` works too.
    """
    import numpy as np

    aliases = {
        "float_": np.float64,
        "complex_": np.complex128,
        "unicode_": np.str_,
        "bool8": np.bool_,
        "bool": np.bool_,
        "int": np.int_,
        "float": np.float64,
        "complex": np.complex128,
        "object": np.object_,
        "str": np.str_,
        "long": np.int_,
        "unicode": np.str_,
    }
    for name, value in aliases.items():
        if name not in vars(np):
            setattr(np, name, value)


# --------------------------------------------------------------------------------------------
# setuptools >= 82: ray's ``import pkg_resources``
# --------------------------------------------------------------------------------------------
class _DistributionNotFound(Exception):
    pass


def _make_pkg_resources_shim() -> types.ModuleType:
    """What ray 2.6 uses of ``pkg_resources``: ``get_distribution``, ``require``,
    ``DistributionNotFound`` (answered by ``importlib.metadata``) and the vendored ``packaging``."""
    mod = types.ModuleType("pkg_resources")
    mod.__doc__ = (
        "Minimal stand-in installed by recbole_faerec.compat for ray only, because setuptools "
        ">= 82 no longer ships pkg_resources."
    )
    mod.DistributionNotFound = _DistributionNotFound

    def get_distribution(name: str):
        try:
            return types.SimpleNamespace(project_name=name, version=importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError as err:
            raise _DistributionNotFound(name) from err

    def require(name: str):
        return [get_distribution(name)]

    def __getattr__(name: str):
        raise AttributeError(
            f"pkg_resources.{name} is not available: setuptools >= 82 ships no pkg_resources and "
            "recbole_faerec only provides what ray needs (install 'setuptools<82' for the rest)"
        )

    mod.get_distribution = get_distribution
    mod.require = require
    mod.__getattr__ = __getattr__
    # ray also reads the packaging library that pkg_resources vendored.
    import packaging.version

    vendor = types.ModuleType("pkg_resources._vendor")
    vendor.packaging = packaging
    mod.packaging = packaging
    mod._vendor = vendor
    mod.__path__ = []
    sys.modules.update(
        {
            "pkg_resources._vendor": vendor,
            "pkg_resources._vendor.packaging": packaging,
            "pkg_resources._vendor.packaging.version": packaging.version,
        }
    )
    return mod


class _RayPkgResourcesFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import pkg_resources`` with a shim, only for ray and only when it is missing.

    It sits at the *end* of ``sys.meta_path``, so a real ``pkg_resources`` (setuptools < 82) always
    wins, and it only answers imports made from ray's own modules; anything else still gets the
    usual ``ModuleNotFoundError``.
    """

    @staticmethod
    def _importer_is_ray() -> bool:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__", "")
            if not (name.startswith("importlib") or name.startswith("_frozen_importlib")
                    or name == __name__):
                return name == "ray" or name.startswith("ray.")
            frame = frame.f_back
        return False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "pkg_resources" or not self._importer_is_ray():
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return _make_pkg_resources_shim()

    def exec_module(self, module):
        pass


def _fix_pkg_resources() -> None:
    if not any(isinstance(f, _RayPkgResourcesFinder) for f in sys.meta_path):
        sys.meta_path.append(_RayPkgResourcesFinder())


# --------------------------------------------------------------------------------------------
# torch: anomaly detection switched on by sine.py at import
# --------------------------------------------------------------------------------------------
def _fix_anomaly_mode() -> None:
    """Import RecBole's sequential models now, then restore the anomaly mode the process had.

    ``sine.py`` calls ``set_detect_anomaly(True)`` at import; importing it here, once, and putting
    the previous mode back keeps a user's own choice (off by default) for the rest of the process.
    """
    import torch

    if "recbole.model.sequential_recommender.sine" in sys.modules:
        # Too late to know the user's mode: sine.py already switched it on; switch it back off.
        torch.autograd.set_detect_anomaly(False)
        return
    state = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py)

    torch.autograd.set_detect_anomaly(state[0], check_nan=state[1])


# --------------------------------------------------------------------------------------------
# pandas 3: Series.agg(callable) is a reduction now
# --------------------------------------------------------------------------------------------
def _pandas2_series_agg(self, func=None, axis=0, *args, **kwargs):
    """pandas 2 semantics of ``Series.agg(callable)``: try element-wise, fall back to the whole.

    RecBole writes ``feat[field].agg(len)`` to get the length of every ``token_seq`` element and
    ``feat[field].agg(np.concatenate)`` to join them; pandas 2 answered the first element-wise and
    the second as a reduction. pandas 3 reduces both.
    """
    if callable(func):
        try:
            return self.apply(func, args=args, **kwargs)
        except (ValueError, AttributeError, TypeError):
            return func(self, *args, **kwargs)
    return _pandas2_series_agg.original(self, func, axis, *args, **kwargs)


def _with_pandas2_agg(method: Callable) -> Callable:
    import pandas as pd

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        previous = pd.Series.agg
        pd.Series.agg = _pandas2_series_agg
        try:
            return method(*args, **kwargs)
        finally:
            pd.Series.agg = previous

    wrapper._recbole_faerec_compat = True
    return wrapper


def _patch_methods(targets: Dict[str, List[str]], decorator: Callable) -> None:
    for class_path, names in targets.items():
        module_name, class_name = class_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        for name in names:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_recbole_faerec_compat", False):
                setattr(cls, name, decorator(method))


def _fix_pandas_seq_agg() -> None:
    import pandas as pd

    if int(pd.__version__.split(".")[0]) < 3:
        return
    _pandas2_series_agg.original = pd.Series.agg
    _patch_methods(
        {
            "recbole.data.dataset.dataset.Dataset": ["_normalize", "_discretization", "_remap"],
            "recbole.data.dataset.sequential_dataset.SequentialDataset": ["_benchmark_presets"],
            "recbole.data.dataset.kg_dataset.KnowledgeBasedDataset": ["_remap"],
        },
        _with_pandas2_agg,
    )


# --------------------------------------------------------------------------------------------
# pandas 3: copy-on-write makes chained inplace fillna a no-op
# --------------------------------------------------------------------------------------------
def _fill_nan(self):
    """Copy-on-write-safe :meth:`recbole.data.dataset.Dataset._fill_nan` (same filling rules).

    ``token`` -> 0 (``[PAD]``), ``float`` -> the field's mean, ``*_seq`` -> an empty array.
    """
    import numpy as np

    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


_fill_nan._recbole_faerec_compat = True


def _with_seq_fields_filled(method: Callable) -> Callable:
    """Wrap ``Dataset._load_feat`` so empty ``*_seq`` cells are read as ``""``, not NaN.

    RecBole then splits every cell with ``str.split``; its own ``fillna(inplace=True)`` on the
    column no longer reaches the frame under copy-on-write.
    """
    import pandas as pd

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        read_csv = pd.read_csv

        def read_csv_filling_seq(*a, **kw):
            df = read_csv(*a, **kw)
            for column in df.columns:
                if str(column).rsplit(":", 1)[-1].endswith("seq"):
                    df[column] = df[column].fillna("")
            return df

        pd.read_csv = read_csv_filling_seq
        try:
            with warnings.catch_warnings():
                # RecBole's own (now redundant) chained fillna still runs and warns.
                warnings.simplefilter("ignore", pd.errors.ChainedAssignmentError)
                return method(*args, **kwargs)
        finally:
            pd.read_csv = read_csv

    wrapper._recbole_faerec_compat = True
    return wrapper


def _fix_pandas_cow_fillna() -> None:
    from recbole.data.dataset.dataset import Dataset

    if not getattr(Dataset._fill_nan, "_recbole_faerec_compat", False):
        Dataset._fill_nan = _fill_nan
    _patch_methods({"recbole.data.dataset.dataset.Dataset": ["_load_feat"]}, _with_seq_fields_filled)


# --------------------------------------------------------------------------------------------
# torch >= 2.6: weights_only=True by default
# --------------------------------------------------------------------------------------------
def _make_torch_proxy(torch_module: types.ModuleType) -> types.ModuleType:
    """A stand-in for ``torch`` inside RecBole's trainer whose ``load`` reads full pickles.

    RecBole's checkpoints hold its ``Config`` object; they are files the trainer itself wrote. Only
    RecBole's trainer sees this proxy; ``torch.load`` everywhere else keeps torch's safe default.
    """

    class _TorchForRecBoleCheckpoints(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch_module, name)

        @staticmethod
        def load(*args, **kwargs):
            kwargs.setdefault("weights_only", False)
            return torch_module.load(*args, **kwargs)

    return _TorchForRecBoleCheckpoints("torch")


def _fix_checkpoint_load() -> None:
    import torch

    trainer_module = importlib.import_module("recbole.trainer.trainer")
    if isinstance(trainer_module.torch, types.ModuleType) and trainer_module.torch is torch:
        trainer_module.torch = _make_torch_proxy(torch)


# --------------------------------------------------------------------------------------------
# RecBole#2191: Collector calls .cpu() on non-tensors
# --------------------------------------------------------------------------------------------
def _get_data_struct(self):
    """:meth:`recbole.evaluator.collector.Collector.get_data_struct`, moving only tensors to CPU."""
    import copy

    import torch

    for key, value in self.data_struct._data_dict.items():
        if isinstance(value, torch.Tensor):
            self.data_struct._data_dict[key] = value.cpu()
    returned_struct = copy.deepcopy(self.data_struct)
    for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
        if key in self.data_struct:
            del self.data_struct[key]
    return returned_struct


_get_data_struct._recbole_faerec_compat = True


def _fix_collector_cpu() -> None:
    from recbole.evaluator.collector import Collector

    Collector.get_data_struct = _get_data_struct


# --------------------------------------------------------------------------------------------
# Trainer: the model is never told its training epoch
# --------------------------------------------------------------------------------------------
def _with_model_epoch(method: Callable) -> Callable:
    """Wrap ``Trainer._train_epoch`` so it calls ``model.set_epoch(epoch_idx)`` first (models that
    have one) and holds validation back before ``eval_start_epoch``
    (:func:`recbole_faerec.trainer.schedule.hold_validation`), for :class:`recbole.trainer.Trainer`
    and every subclass that calls it."""

    from recbole_faerec.trainer.schedule import hold_validation

    @functools.wraps(method)
    def wrapper(self, train_data, epoch_idx, *args, **kwargs):
        set_epoch = getattr(self.model, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch_idx)
        hold_validation(self, epoch_idx)
        return method(self, train_data, epoch_idx, *args, **kwargs)

    wrapper._recbole_faerec_compat = True
    return wrapper


def _fix_trainer_epoch() -> None:
    _patch_methods({"recbole.trainer.trainer.Trainer": ["_train_epoch"]}, _with_model_epoch)


# --------------------------------------------------------------------------------------------
# Trainer: the parts of a tuple loss are logged by position
# --------------------------------------------------------------------------------------------
def _named_losses(model, losses):
    """``model.loss_names`` when it names each part of the tuple ``losses``, else None."""
    names = getattr(model, "loss_names", None)
    if isinstance(losses, tuple) and names and len(names) == len(losses):
        return tuple(str(n) for n in names)
    return None


def _with_loss_names(method: Callable) -> Callable:
    """Wrap ``Trainer._generate_train_loss_output``: ``train loss: <sum> (rec: .., align: ..)``
    for a model with ``loss_names``; RecBole's own text otherwise."""

    @functools.wraps(method)
    def wrapper(self, epoch_idx, s_time, e_time, losses):
        names = _named_losses(self.model, losses)
        if names is None:
            return method(self, epoch_idx, s_time, e_time, losses)
        from recbole.utils import set_color

        des = "%." + str(self.config["loss_decimal_place"] or 4) + "f"
        text = method(self, epoch_idx, s_time, e_time, float(sum(losses)))
        parts = ", ".join(set_color(name, "blue") + ": " + des % loss for name, loss in zip(names, losses))
        return text[: -1] + f" ({parts})]"

    wrapper._recbole_faerec_compat = True
    return wrapper


def _with_loss_names_tensorboard(method: Callable) -> Callable:
    """Wrap ``Trainer._add_train_loss_to_tensorboard``: ``Loss/Train/<name>`` per named part."""

    @functools.wraps(method)
    def wrapper(self, epoch_idx, losses, tag="Loss/Train"):
        names = _named_losses(self.model, losses)
        if names is None:
            return method(self, epoch_idx, losses, tag)
        for name, loss in zip(names, losses):
            self.tensorboard.add_scalar(f"{tag}/{name}", loss, epoch_idx)

    wrapper._recbole_faerec_compat = True
    return wrapper


def _fix_loss_names() -> None:
    _patch_methods({"recbole.trainer.trainer.Trainer": ["_generate_train_loss_output"]},
                   _with_loss_names)
    _patch_methods({"recbole.trainer.trainer.Trainer": ["_add_train_loss_to_tensorboard"]},
                   _with_loss_names_tensorboard)


# --------------------------------------------------------------------------------------------
# recbole.quick_start.load_data_and_model: plugin checkpoints
# --------------------------------------------------------------------------------------------
def _route_load_data_and_model(module: types.ModuleType) -> None:
    """Point ``load_data_and_model`` of ``recbole.quick_start.quick_start`` at the plugin's.

    RecBole's own reads the checkpoint with ``torch.load``'s ``weights_only`` default (torch >= 2.6
    refuses the pickled ``Config``) and looks the model up with ``recbole.utils.get_model``, which
    knows no plugin model and imports lightgbm/xgboost for unrelated models. The plugin's version
    (:func:`recbole_faerec.quick_start.reload.load_data_and_model`) returns the same six objects.
    """
    current = getattr(module, "load_data_and_model", None)
    if current is None or getattr(current, "_recbole_faerec_compat", False):
        return

    @functools.wraps(current)
    def load_data_and_model(model_file):
        from recbole_faerec.quick_start.reload import load_data_and_model as plugin_load

        return plugin_load(model_file)

    load_data_and_model._recbole_faerec_compat = True
    module.load_data_and_model = load_data_and_model
    package = sys.modules.get("recbole.quick_start")
    if package is not None and getattr(package, "load_data_and_model", None) is current:
        package.load_data_and_model = load_data_and_model


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Runs ``hooks[name](module)`` right after module ``name`` is first executed, so a fix of a
    module that is costly to import (``recbole.quick_start`` imports ray) costs nothing unless the
    user imports it."""

    def __init__(self, hooks: Dict[str, Callable[[types.ModuleType], None]]):
        self.hooks = hooks

    def find_spec(self, fullname, path=None, target=None):
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_fix(module):
            exec_module(module)
            hook(module)

        spec.loader.exec_module = exec_and_fix
        return spec


def _fix_load_data_and_model() -> None:
    name = "recbole.quick_start.quick_start"
    if name in sys.modules:
        _route_load_data_and_model(sys.modules[name])
    elif not any(isinstance(f, _AfterImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder({name: _route_load_data_and_model}))


# Order matters: numpy aliases first (RecBole modules read them at import).
# --------------------------------------------------------------------------------------------
# Sequential models: training on every position of each user's sequence
# --------------------------------------------------------------------------------------------
def _fix_train_positions() -> None:
    """``train_positions`` for every sequential model (``all`` refused where it cannot work) and
    the every-position loss for RecBole's causal backbones (:mod:`recbole_faerec.model.positions`)."""
    from recbole.model.abstract_recommender import SequentialRecommender
    from recbole.model.sequential_recommender import GRU4Rec, SASRec

    from recbole_faerec.model.positions import all_positions_loss, padding_forward, positions_init

    if not getattr(SequentialRecommender.__init__, "_recbole_faerec_compat", False):
        SequentialRecommender.__init__ = positions_init(SequentialRecommender.__init__)
    for cls in (SASRec, GRU4Rec):
        if not getattr(cls.calculate_loss, "_recbole_faerec_compat", False):
            cls.calculate_loss = all_positions_loss(cls.calculate_loss)
    if not getattr(SASRec.forward, "_recbole_faerec_compat", False):  # padding_side: left
        SASRec.forward = padding_forward(SASRec.forward)


# --------------------------------------------------------------------------------------------
# Sequential models: the paper's BCE loss with one sampled negative
# --------------------------------------------------------------------------------------------
def _fix_bce_loss() -> None:
    """Every RecBole sequential model whose ``__init__`` has a BPR branch learns ``loss_type:
    BCE`` (built through that branch, with :class:`~recbole_faerec.model.loss.BCEOneNegativeLoss`
    as its loss function)."""
    import inspect

    import recbole.model.sequential_recommender as seq
    from recbole.model.abstract_recommender import SequentialRecommender

    from recbole_faerec.model.loss import bce_capable

    for cls in vars(seq).values():
        if not (isinstance(cls, type) and issubclass(cls, SequentialRecommender)):
            continue
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_recbole_faerec_compat", False):
            continue
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        if '"BPR"' in source or "'BPR'" in source:
            cls.__init__ = bce_capable(init)


def _fix_tail_metrics() -> None:
    """The tail-aware metrics in RecBole's metric registry, and its trainers' ``Collector`` the
    plugin's ``TailCollector`` (:func:`recbole_faerec.evaluator.metrics.register_metrics`)."""
    from recbole_faerec.evaluator.metrics import register_metrics

    register_metrics()


def _fix_history_exclusion() -> None:
    """``eval_exclude_history`` in RecBole's full-sort evaluation
    (:func:`recbole_faerec.evaluator.history.install_history_exclusion`)."""
    from recbole_faerec.evaluator.history import install_history_exclusion

    install_history_exclusion()


FIXES: Dict[str, Callable[[], None]] = {
    "numpy_aliases": _fix_numpy_aliases,
    "pkg_resources": _fix_pkg_resources,
    "anomaly_mode": _fix_anomaly_mode,
    "pandas_seq_agg": _fix_pandas_seq_agg,
    "pandas_cow_fillna": _fix_pandas_cow_fillna,
    "checkpoint_load": _fix_checkpoint_load,
    "collector_cpu": _fix_collector_cpu,
    "trainer_epoch": _fix_trainer_epoch,
    "loss_names": _fix_loss_names,
    "load_data_and_model": _fix_load_data_and_model,
    "bce_loss": _fix_bce_loss,
    "train_positions": _fix_train_positions,
    "tail_metrics": _fix_tail_metrics,
    "history_exclusion": _fix_history_exclusion,
}


def apply() -> List[str]:
    """Apply every fix not listed in ``$RECBOLE_FAEREC_COMPAT_SKIP``; return the applied names."""
    skipped = _skipped()
    unknown = skipped - set(FIXES)
    if unknown:
        raise ValueError(
            f"{SKIP_ENV} names unknown fixes {sorted(unknown)}; known: {sorted(FIXES)}"
        )
    for name, fix in FIXES.items():
        if name in skipped or name in _applied:
            continue
        fix()
        _applied.append(name)
    return list(_applied)


def applied() -> List[str]:
    """Names of the fixes applied in this process."""
    return list(_applied)
