"""Hyperparameter tuning with RecBole's :class:`recbole.trainer.HyperTuning`, for plugin models.

``python run_hyper_faerec.py --model=FAERec_SASRec --dataset=ml-100k --params_file=props/hyper/faerec.hyper``

What RecBole's own ``run_hyper.py`` does, with these differences:

* the objective (:func:`objective_function`) trains with
  :func:`recbole_faerec.quick_start.run_recbole_faerec`, so plugin models, the plugin's ``props/``
  defaults and the tail-aware metrics work (RecBole's ``objective_function`` also imports ray);
* hyperopt is an optional extra (``pip install -e ".[tune]"``); without it, one clear line;
* hyperopt >= 0.2.7 draws from a ``numpy.random.Generator``; RecBole 1.2.1's exhaustive search
  (written for hyperopt 0.2.5) hands it a ``RandomState`` and fails with ``'RandomState' object
  has no attribute 'integers'``. :func:`exhaustive_search` gives it a ``Generator``, for that
  call only;
* the params file may carry ``#`` comments; a bad line, an unknown parameter name, a tuned
  parameter also fixed on the command line, or a non-``choice`` line under exhaustive search is
  an error naming the file and line, not a silently ignored setting;
* exhaustive search runs the whole grid (RecBole stops any search after 10 trials without
  progress; ``early_stop`` still applies to random and bayes search);
* every trial's parameters, best-valid and test metrics go to ``<name>.csv`` and ``<name>.md``
  beside RecBole's text file ``<name>.result`` (the output file), rewritten after each trial so a crash or Ctrl-C keeps
  the trials already done; the best trial is the argmax (or argmin) of the valid metric.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import difflib
import os
import sys
import types
from typing import Any, Dict, List, Optional, Sequence

from recbole_faerec.quick_start.quick_start import build_config, run_recbole_faerec, tested_epoch

INSTALL_HINT = 'pip install -e ".[tune]"'
ALGOS = ("exhaustive", "random", "bayes")
PARAM_TYPES = {"choice": 1, "uniform": 2, "quniform": 3, "loguniform": 2}  # type -> number of values


class HyperoptMissingError(ImportError):
    """hyperopt, the optional extra ``tune``, is not installed."""


class HyperTuningError(ValueError):
    """A bad params file, search setting or command line for :func:`run_hyper`."""


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------
def objective_function(
    config_dict: Optional[Dict[str, Any]] = None,
    config_file_list: Optional[List[str]] = None,
    saved: bool = True,
    model: Optional[str] = None,
    dataset: Optional[str] = None,
) -> Dict[str, Any]:
    """RecBole's ``objective_function`` (same arguments and result) on the plugin's runner.

    ``model`` and ``dataset`` default to those in ``config_dict``, the config files or the command
    line, as in RecBole. With ``saved`` the test metrics are those of the best-valid checkpoint;
    without it, of the last epoch's model (RecBole's behaviour).

    Returns:
        :func:`run_recbole_faerec`'s result: ``model`` (the name), ``best_valid_score``,
        ``valid_score_bigger``, ``best_valid_result``, ``test_result``, ``model_file``, ...
    """
    return run_recbole_faerec(model=model, dataset=dataset, config_file_list=config_file_list,
                              config_dict=config_dict, saved=saved)


# --------------------------------------------------------------------------------------------
# hyperopt >= 0.2.7 and RecBole's exhaustive search
# --------------------------------------------------------------------------------------------
def _hyperopt_uses_generator() -> bool:
    """hyperopt 0.2.7 switched its samplers from ``RandomState`` (``randint``) to numpy's
    ``Generator`` (``integers``)."""
    import importlib.metadata

    from packaging.version import Version

    return Version(importlib.metadata.version("hyperopt")) >= Version("0.2.7")


class _NumpyWithGeneratorRandomState(types.ModuleType):
    """numpy, except that ``random.RandomState(seed)`` builds a ``Generator`` (``default_rng``)."""

    def __init__(self, numpy_module):
        super().__init__("numpy")
        random = types.ModuleType("numpy.random")
        random.__getattr__ = lambda name: getattr(numpy_module.random, name)
        random.RandomState = numpy_module.random.default_rng
        self._numpy = numpy_module
        self.random = random

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures=1000):
    """:func:`recbole.trainer.hyper_tuning.exhaustive_search`, working with hyperopt >= 0.2.7.

    RecBole's function seeds ``numpy.random.RandomState``, which hyperopt's samplers no longer
    accept; during this call only, its module sees a numpy whose ``RandomState`` is
    ``default_rng``. Nothing changes for older hyperopt.
    """
    from recbole.trainer import hyper_tuning

    if not _hyperopt_uses_generator():
        return hyper_tuning.exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures)
    numpy_module = hyper_tuning.np
    hyper_tuning.np = _NumpyWithGeneratorRandomState(numpy_module)
    try:
        return hyper_tuning.exhaustive_search(new_ids, domain, trials, seed, nbMaxSucessiveFailures)
    finally:
        hyper_tuning.np = numpy_module


# --------------------------------------------------------------------------------------------
# the params file
# --------------------------------------------------------------------------------------------
def read_params_file(params_file: str) -> Dict[str, Dict[str, Any]]:
    """Read a RecBole params file into the ``params_dict`` of :class:`HyperTuning`.

    RecBole's format, one parameter a line: ``name choice [v1,v2,...]``, ``name uniform low,high``,
    ``name quniform low,high,q``, ``name loguniform low,high`` (hyperopt's ``loguniform``: the
    bounds are natural logs). Text after ``#`` is a comment (an extension: RecBole's own reader
    has none). Returns ``{type: {name: values}}``; a bad line raises :class:`HyperTuningError`
    naming the file and line.
    """
    try:
        with open(params_file, "r", encoding="utf-8") as fp:
            lines = fp.readlines()
    except OSError as err:
        raise HyperTuningError(f"cannot read the params file {params_file}: {err.strerror}") from err
    space: Dict[str, Dict[str, Any]] = {}
    seen: Dict[str, int] = {}
    formats = ("'name choice [v1,v2]', 'name uniform low,high', 'name quniform low,high,q' or "
               "'name loguniform low,high'")
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{params_file}:{lineno}"
        parts = line.split()
        if len(parts) < 3 or parts[1] not in PARAM_TYPES:
            raise HyperTuningError(f"{where}: expected {formats}; got {line!r}")
        name, kind, value = parts[0], parts[1], "".join(parts[2:])
        if name in seen:
            raise HyperTuningError(f"{where}: '{name}' is already tuned on line {seen[name]}")
        seen[name] = lineno
        if kind == "choice":
            try:
                values = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                values = None
            if not isinstance(values, list) or not values:
                raise HyperTuningError(
                    f"{where}: '{name} choice' needs a non-empty Python list of literals, e.g. "
                    f"[0.1,0.2] or ['a','b']; got {value!r}")
        else:
            try:
                values = [float(v) for v in value.split(",")]
            except ValueError:
                values = []
            if len(values) != PARAM_TYPES[kind]:
                raise HyperTuningError(
                    f"{where}: '{name} {kind}' needs {PARAM_TYPES[kind]} comma-separated numbers "
                    f"({'low,high,q' if kind == 'quniform' else 'low,high'}); got {value!r}")
            if values[0] >= values[1]:
                raise HyperTuningError(f"{where}: '{name} {kind}' needs low < high; got {value!r}")
        space.setdefault(kind, {})[name] = values
    if not space:
        raise HyperTuningError(f"{params_file}: no parameter to tune (expected lines like {formats})")
    return space


def _tuned_names(params: Dict[str, Dict[str, Any]]) -> List[str]:
    return [name for names in params.values() for name in names]


def _cmd_line_keys(argv: Sequence[str]) -> List[str]:
    """The parameters RecBole's ``Config`` reads from ``argv`` (``--key=value`` only)."""
    return [arg[2:].split("=")[0] for arg in argv if arg.startswith("--") and arg.count("=") == 1]


def _check_params(params, source, config, model, dataset, algo, fixed: Dict[str, Any]) -> None:
    """Settings that would not take effect are errors: unknown names, names fixed elsewhere
    with a higher priority than the trial's, non-grid lines under exhaustive search."""
    names = _tuned_names(params)
    unknown = [n for n in names if n not in config]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(config.final_config_dict), n=3)
            hints.append(f"'{name}'" + (f" (close: {', '.join(close)})" if close else ""))
        raise HyperTuningError(
            f"{source}: {', '.join(hints)} is not a parameter of {model} on {dataset}: tuning it "
            "would change nothing (if the model reads it, set a default in a --config_files YAML)")
    on_cmd_line = [n for n in names if n in _cmd_line_keys(sys.argv[1:]) and n not in fixed]
    if on_cmd_line:
        raise HyperTuningError(
            f"{source}: {', '.join(on_cmd_line)} also given on the command line (sys.argv), which "
            "RecBole's Config puts above every trial's value; drop it there")
    if algo == "exhaustive":
        other = [f"{n} ({kind})" for kind, group in params.items() if kind != "choice" for n in group]
        if other:
            raise HyperTuningError(
                f"{source}: exhaustive search enumerates 'choice' lines only; {', '.join(other)} "
                "would be sampled at random: use --algo=random or --algo=bayes with --max_evals, "
                "or write them as 'choice [...]'")
    also_fixed = [n for n in names if n in fixed]
    if also_fixed:
        raise HyperTuningError(
            f"{source}: {', '.join(also_fixed)} is tuned, and also fixed in config_dict (a "
            "--key=value of the command line): every trial would overwrite the fixed value; drop one")


# --------------------------------------------------------------------------------------------
# the results table
# --------------------------------------------------------------------------------------------
def table_paths(output_file: str) -> Dict[str, str]:
    """Where :func:`run_hyper` writes: RecBole's text file, the CSV and the Markdown table."""
    base, ext = os.path.splitext(output_file)
    if ext.lower() in (".csv", ".md") or not base:
        base = output_file
    return {"result": output_file, "csv": base + ".csv", "md": base + ".md"}


def best_trial(trials: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The trial with the best ``best_valid_score`` (the largest when ``valid_score_bigger``);
    the first one on a tie."""
    best = None
    for trial in trials:
        score = trial["best_valid_score"]
        if best is None or (score > best["best_valid_score"] if trial["valid_score_bigger"]
                            else score < best["best_valid_score"]):
            best = trial
    return best


def _rows(trials, param_names):
    valid_keys = list(dict.fromkeys(k for t in trials for k in t["best_valid_result"]))
    test_keys = list(dict.fromkeys(k for t in trials for k in t["test_result"]))
    best = best_trial(trials)
    header = (["trial", *param_names, "best_valid_score"] + [f"valid_{k}" for k in valid_keys]
              + [f"test_{k}" for k in test_keys] + ["best_epoch", "epochs", "model_file", "best"])
    rows = []
    for trial in trials:
        scores = trial.get("valid_scores") or []
        best_epoch = ""
        if scores:
            epochs = trial.get("valid_epochs") or []
            if len(epochs) != len(scores):  # RecBole's every eval_step-th epoch
                step = trial.get("eval_step", 1)
                epochs = [(i + 1) * step - 1 for i in range(len(scores))]
            # the tested checkpoint's epoch, 1-based
            best_epoch = tested_epoch(scores, epochs, trial["valid_score_bigger"]) + 1
        rows.append([trial["trial"], *[trial["params"].get(n, "") for n in param_names],
                     trial["best_valid_score"],
                     *[trial["best_valid_result"].get(k, "") for k in valid_keys],
                     *[trial["test_result"].get(k, "") for k in test_keys],
                     best_epoch, len(trial.get("train_seconds") or []),
                     trial.get("model_file") or "", "yes" if trial is best else ""])
    return header, rows


def write_tables(trials, param_names, paths, model, dataset, valid_metric) -> None:
    """Write ``paths['csv']`` and ``paths['md']`` from the trials done so far."""
    header, rows = _rows(trials, param_names)
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(header)
        writer.writerows(rows)
    best = best_trial(trials)

    def fmt(column, value):
        if value == "":
            return ""
        metric = column > len(param_names)
        return f"{value:.4f}" if metric and isinstance(value, float) else str(value)

    lines = [f"# Hyperparameter tuning: {model} on {dataset}", "",
             f"{len(trials)} trial(s); best valid score is {valid_metric} "
             f"({'larger' if best['valid_score_bigger'] else 'smaller'} is better).", "",
             "| " + " | ".join(header[:-2]) + " |", "|" + "---|" * (len(header) - 2)]
    for row in rows:
        mark = "**" if row[-1] else ""
        lines.append("| " + " | ".join(f"{mark}{fmt(i, v)}{mark}" if v != "" else ""
                                       for i, v in enumerate(row[:-2])) + " |")
    lines += ["", f"Best (trial {best['trial']}): "
              + ", ".join(f"{k}={v}" for k, v in best["params"].items()),
              f"best valid: {best['best_valid_result']}", f"test: {best['test_result']}", ""]
    with open(paths["md"], "w", encoding="utf-8") as fp:
        fp.write("\n".join(lines))


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------
def require_hyperopt() -> None:
    try:
        import hyperopt  # noqa: F401
    except ImportError as err:
        raise HyperoptMissingError(
            "hyperparameter tuning needs hyperopt, an optional extra: "
            f"{INSTALL_HINT} (or pip install 'hyperopt>=0.2.7')") from err


@contextlib.contextmanager
def _env(name: str, value: str):
    """Set ``$name`` to ``value`` unless it is set already, for the block only."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def run_hyper(
    model: str,
    dataset: str,
    params_file: Optional[str] = None,
    params_dict: Optional[Dict[str, Dict[str, Any]]] = None,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    algo: str = "exhaustive",
    max_evals: int = 100,
    early_stop: Optional[int] = None,
    output_file: Optional[str] = None,
    saved: bool = True,
) -> Dict[str, Any]:
    """Tune ``model`` on ``dataset`` with RecBole's :class:`~recbole.trainer.HyperTuning`.

    Args:
        model, dataset: as for :func:`run_recbole_faerec`.
        params_file: a RecBole params file (see :func:`read_params_file`); or
        params_dict: the same as ``{'choice': {name: [values]}, 'uniform': {name: [low, high]}}``.
        config_file_list, config_dict: fixed settings of every trial (a trial's parameters win).
        algo: ``exhaustive`` (every combination of the ``choice`` lines; ``max_evals`` is the grid
            size), ``random`` or ``bayes`` (hyperopt's TPE), ``max_evals`` trials. The points are
            drawn with RecBole's ``seed`` unless ``$HYPEROPT_FMIN_SEED`` is set.
        early_stop: stop after this many trials without improvement (hyperopt's
            ``no_progress_loss``); default: never for exhaustive search, 10 (RecBole's) otherwise.
        output_file: RecBole's text result; the CSV and Markdown tables go beside it
            (:func:`table_paths`). Default ``hyper-<model>-<dataset>.result``.
        saved: save each trial's best checkpoint and test it (otherwise the last epoch's model is
            tested, with a warning when it can differ).

    Returns:
        ``trials`` (each: ``trial``, ``params`` and the objective's result), ``best`` (the best
        trial), ``best_params``, ``paths`` (the files written) and ``stopped_early``.
    """
    require_hyperopt()
    from recbole.trainer import HyperTuning

    if algo not in ALGOS:
        raise HyperTuningError(f"unknown --algo={algo}; one of {', '.join(ALGOS)}")
    if (params_file is None) == (params_dict is None):
        raise HyperTuningError("give the search space as params_file or params_dict (one of them)")
    params = read_params_file(params_file) if params_file else params_dict
    source = params_file or "params_dict"
    fixed = dict(config_dict or {})
    for key in ("nproc", "world_size"):
        if key in fixed and fixed[key] not in (1, -1):
            raise HyperTuningError(f"tuning runs its trials in one process; drop --{key}")
    config = build_config(model, dataset, config_file_list, fixed)  # checks model, dataset, files
    _check_params(params, source, config, model, dataset, algo, fixed)
    if not saved and config["epochs"] > 1:
        print(f"warning: saved=False: each trial's test metrics are of its last epoch's model, not "
              f"of its best-valid one (epochs={config['epochs']})", file=sys.stderr)

    param_names = _tuned_names(params)
    output_file = output_file or f"hyper-{config['model']}-{dataset}.result"
    paths = table_paths(output_file)
    if os.path.dirname(output_file):
        os.makedirs(os.path.dirname(output_file), exist_ok=True)
    trials: List[Dict[str, Any]] = []

    def objective(trial_params, files):
        result = objective_function({**fixed, **trial_params}, files, saved=saved,
                                    model=model, dataset=dataset)
        trials.append({"trial": len(trials) + 1, "params": dict(trial_params), **result,
                       "eval_step": trial_params.get("eval_step", config["eval_step"])})
        write_tables(trials, param_names, paths, config["model"], dataset, config["valid_metric"])
        return result

    if early_stop is None and algo != "exhaustive":
        early_stop = 10
    tuner = HyperTuning(objective, params_dict=params, fixed_config_file_list=config_file_list,
                        algo=algo, max_evals=max_evals,
                        early_stop=early_stop if early_stop is not None else sys.maxsize)
    if algo == "exhaustive":
        tuner.algo = exhaustive_search
    planned = int(tuner.max_evals)
    print(f"{algo} search over {', '.join(param_names)}: {planned} trial(s) of {config['model']} "
          f"on {dataset}; results in {paths['csv']}, {paths['md']}, {paths['result']}")
    try:
        with _env("HYPEROPT_FMIN_SEED", str(config["seed"])):
            tuner.run()
    finally:
        if trials:
            tuner.export_result(output_file=paths["result"])
    best = best_trial(trials)
    stopped_early = len(trials) < planned
    print()
    with open(paths["md"], encoding="utf-8") as fp:
        print(fp.read())
    if stopped_early:
        print(f"the search stopped after {len(trials)} of {planned} trials: no better valid score "
              f"in {early_stop} trials in a row (early_stop)")
    print("best params: ", best["params"])
    print("best result: ")
    print({"best_valid_score": float(best["best_valid_score"]),
           "best_valid_result": best["best_valid_result"], "test_result": best["test_result"]})
    return {"trials": trials, "best": best, "best_params": best["params"], "paths": paths,
            "stopped_early": stopped_early}


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Tune a RecBole or recbole_faerec model with RecBole's HyperTuning (hyperopt). "
        "Any RecBole parameter, fixed for every trial, as --key=value or --key value.")
    parser.add_argument("--model", "-m", default="SASRec", help="model name (default SASRec)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML config files, fixed for every trial")
    parser.add_argument("--params_file", required=True,
                        help="the search space, RecBole's format (e.g. props/hyper/faerec.hyper)")
    parser.add_argument("--algo", default="exhaustive", choices=ALGOS,
                        help="exhaustive (the whole grid of 'choice' lines, default), random or "
                        "bayes (TPE)")
    parser.add_argument("--max_evals", type=int, default=100,
                        help="trials of random/bayes search (default 100)")
    parser.add_argument("--early_stop", type=int, default=None,
                        help="stop after this many trials without improvement (default: never "
                        "for exhaustive, 10 otherwise)")
    parser.add_argument("--output_file", default=None,
                        help="RecBole's text result; <name>.csv and <name>.md beside it "
                        "(default hyper-<model>-<dataset>.result)")
    parser.add_argument("--saved", default="True",
                        help="save and test each trial's best-valid checkpoint (default True)")
    return parser


def _extra_params(extra: List[str]) -> Dict[str, Any]:
    """``--key=value`` and ``--key value`` (read as the runner reads them,
    :func:`~recbole_faerec.quick_start.cli.recbole_args`) into a dict, values typed like RecBole's
    command line."""
    from recbole.config import Config as RecBoleConfig

    from recbole_faerec.quick_start.cli import CommandLineError, recbole_args

    try:
        normalised = recbole_args(extra)
    except CommandLineError as err:
        raise HyperTuningError(str(err)) from None
    params: Dict[str, str] = {}
    for arg in normalised:
        if not arg.startswith("--") or "=" not in arg:
            raise HyperTuningError(f"unexpected argument {arg!r}: parameters are --key=value or "
                                   "--key value")
        key, value = arg[2:].split("=", 1)
        if key in params and params[key] != value:
            raise HyperTuningError(f"--{key} given twice with different values")
        params[key] = value
    return RecBoleConfig._convert_config_dict(None, params)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise HyperTuningError(f"--saved={text}: expected True or False")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (2 for bad input, with a one-line reason)."""
    from recbole_faerec.data.atomic import AtomicFileError
    from recbole_faerec.embeddings.providers import EmbeddingError
    from recbole_faerec.evaluator import EvaluationConfigError
    from recbole_faerec.model.llm_item import MethodBackboneError
    from recbole_faerec.settings import SettingError
    from recbole_faerec.utils.utils import ModelNotFoundError

    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = build_parser().parse_known_args(argv)
    original_argv = sys.argv
    try:
        require_hyperopt()
        fixed = _extra_params(extra)
        config_file_list = args.config_files.strip().split(" ") if args.config_files else None
        saved = _bool(args.saved)
        # The fixed parameters go in config_dict, below each trial's values; RecBole's Config
        # would otherwise read them from sys.argv, above them (and miss the '--key value' form).
        sys.argv = original_argv[:1]
        run_hyper(args.model, args.dataset, params_file=args.params_file,
                  config_file_list=config_file_list, config_dict=fixed, algo=args.algo,
                  max_evals=args.max_evals, early_stop=args.early_stop,
                  output_file=args.output_file, saved=saved)
    except (HyperoptMissingError, HyperTuningError, ModelNotFoundError, AtomicFileError,
            EmbeddingError, EvaluationConfigError, SettingError, MethodBackboneError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        sys.argv = original_argv
    return 0
