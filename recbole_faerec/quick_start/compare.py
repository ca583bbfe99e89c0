"""Several models under one shared config on one dataset: a results table and the paper's plots.

``python run_recbole_faerec.py --model=SASRec,FAERec_SASRec,GRU4Rec,FAERec_GRU4Rec --dataset=amazon-beauty``
trains and tests each model in turn with :func:`~recbole_faerec.quick_start.train_and_test`
(RecBole's trainer and evaluator, the same seed and settings for all) and writes to ``out_dir``:

* ``results.md`` and ``results.csv``: overall, tail, head, coverage and popularity-group metrics
  (RecBole's evaluator with :mod:`recbole_faerec.evaluator`'s metrics), train seconds per epoch,
  epochs and best epoch;
* ``groups.png``: Hit@K and NDCG@K per popularity group of the target item, one bar per model
  (paper Figure 4);
* ``tsne.png``: scikit-learn's t-SNE of the same sample of items for each model, ID and LLM views in
  one map where the model has both (paper Figure 5; a plain backbone shows its ID table only);
* ``results.json``: everything above as numbers, the shared settings, and the sampled items;
* ``per_user.npz``: each run's test rows (``<run>/rank``, ``<run>/target``, ``<run>/user``: the
  target's 1-based rank in the top ``max(topk)``, 0 for a miss) and the items' ``tail_mask``, for
  the paired tests.

The tables, ``results.json`` and ``per_user.npz`` are rewritten after every run (the plots at the
end): a comparison that stops early keeps its finished runs as a part :func:`merge_comparisons`
takes, with the runs not done in ``missing_runs``; the same command with ``--resume`` continues it
(the runs done are kept, the interrupted one goes on from its last-epoch checkpoint).

``seeds`` (``--seeds=2020,2021,2022``) runs every model once per seed (RecBole's ``seed``): the
table then shows the mean ± sample standard deviation over the seeds, the CSV one row per model and
seed plus mean and std rows. Each pair of a backbone ``B`` and a model ``<Something>_B`` in the list
gets a paired test over the test users (:func:`paired_tests`: each user's NDCG@K averaged over the
seeds; Wilcoxon signed-rank and paired t-test from scipy.stats), on all users and on those with a
tail target, in the table's "Significance" section and in ``results.json``.

An entry ``Model[key=value;key=value]`` is a variant of ``Model`` with its own settings on top of
the shared ones (:func:`parse_model_spec`), e.g. the paper's ablations
``FAERec_SASRec[item_align=False]``; it is tested against ``Model`` when that runs too.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import logging
import math
import os
import sys
import textwrap
import time
import warnings
from logging import getLogger
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from recbole_faerec.evaluator.history import history_score, targets_in_history
from recbole_faerec.evaluator.metrics import METRICS
from recbole_faerec.evaluator.popularity import (
    ATTRIBUTE,
    evaluation_popularity,
    group_edges,
    group_of,
    head_ratio,
    popularity_groups,
)
from recbole_faerec.quick_start.quick_start import tested_epoch, train_and_test

ALL_TAIL_METRICS = [cls.__name__ for cls in METRICS]
SUMMARY = [("Hit", "hit"), ("NDCG", "ndcg"), ("TailHit", "tailhit"), ("TailNDCG", "tailndcg"),
           ("HeadHit", "headhit"), ("HeadNDCG", "headndcg"), ("Cov", "coverage"),
           ("TCov", "tailcoverage")]


class ModelSpecError(ValueError):
    """A ``--model`` entry of the comparison that cannot be read."""


def split_models(text: str) -> List[str]:
    """``--model``'s comma-separated entries; commas inside a variant's ``[...]`` do not split."""
    return _split_top(text)


def parse_model_spec(spec: str):
    """``(model, settings)`` of a comparison entry: ``FAERec_SASRec`` or a variant of it with its
    own settings, ``FAERec_SASRec[item_align=False]`` (several ``key=value`` separated by ``,`` or
    ``;``; values read as YAML: ``False``, ``0.5``, ``[a, b]``). The entry is the row's label."""
    import yaml

    spec = spec.strip()
    if "[" not in spec and "]" not in spec:
        return spec, {}
    if not spec.endswith("]") or spec.index("[") <= 0 or spec.count("[") != spec.count("]"):
        raise ModelSpecError(f"model entry '{spec}': write a variant as Model[key=value;key=value]")
    name, body = spec[:-1].split("[", 1)
    settings: Dict[str, Any] = {}
    for item in [i for part in body.split(";") for i in _split_top(part)]:
        if "=" not in item:
            raise ModelSpecError(f"model entry '{spec}': '{item}' is not key=value")
        key, value = (x.strip() for x in item.split("=", 1))
        if not key or key in settings:
            raise ModelSpecError(f"model entry '{spec}': key '{key}' is empty or given twice")
        settings[key] = yaml.safe_load(value) if value else None
    if not settings:
        raise ModelSpecError(f"model entry '{spec}': the variant sets nothing")
    return name.strip(), settings


def parse_pairs(text: Optional[str], names: List[str]) -> List[tuple]:
    """``--pairs``: comma-separated ``BASE:MODEL`` entries (``LLMInit_SASRec:FAERec_SASRec``), the
    paired tests to add to the automatic ones of :func:`model_pairs` (e.g. a method against the
    strongest other method, not only against its backbone). Every name must be one of ``names``
    (the comparison's models, variants written as in ``--model``)."""
    pairs = []
    for entry in _split_top(text or ""):
        parts = _split_top(entry, ":")
        if len(parts) != 2:
            raise ModelSpecError(f"--pairs entry '{entry}': write a pair as BASE:MODEL, e.g. "
                                 "SASRec:FAERec_SASRec")
        pairs.append(tuple(parts))
    return _check_pairs(pairs, names)


def _check_pairs(pairs, names: List[str]) -> List[tuple]:
    """``pairs`` as ``--pairs`` text (:func:`parse_pairs`) or as ``(base, model)`` tuples, each
    checked against ``names``, without repeats."""
    if isinstance(pairs, str):
        return parse_pairs(pairs, names)
    checked: List[tuple] = []
    for base, model in pairs or []:
        entry = f"{base}:{model}"
        unknown = [p for p in (base, model) if p not in names]
        if unknown:
            raise ModelSpecError(f"--pairs entry '{entry}': {', '.join(unknown)} is not one of the "
                                 f"compared models ({', '.join(names)})")
        if base == model:
            raise ModelSpecError(f"--pairs entry '{entry}': a model against itself")
        if (base, model) not in checked:
            checked.append((base, model))
    return checked


def all_pairs(names: List[str], extra: Optional[List] = None) -> List[tuple]:
    """:func:`model_pairs` of ``names``, then the ``extra`` pairs (``--pairs``) whose two models
    are both in ``names`` and that are not among them yet."""
    pairs = model_pairs(names)
    for base, model in extra or []:
        if base in names and model in names and (base, model) not in pairs:
            pairs.append((base, model))
    return pairs


def _split_top(text: str, sep: str = ",") -> List[str]:
    """``a=1,b=[x, y]`` split at the commas (``sep``) outside brackets."""
    out, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == sep and depth == 0:
            out.append(current)
            current = ""
        else:
            current += char
    out.append(current)
    return [o.strip() for o in out if o.strip()]


def run_comparison(
    models: List[str],
    dataset: str,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    out_dir: Optional[str] = None,
    saved: bool = True,
    tsne_items: int = 400,
    plots: bool = True,
    seeds: Optional[List[int]] = None,
    pairs=None,
    resume: bool = False,
) -> Dict[str, Any]:
    """Train and test ``models`` on ``dataset`` under one config; write the table and plots.

    ``config_dict`` (and the command line's ``--key=value``) apply to every model; an entry
    ``Model[key=value;...]`` is a variant of ``Model`` with its own settings on top (an ablation,
    paper Table 3), compared with ``Model`` when that is in the list too. The tail-aware
    metrics and the popularity groups are added to the configured ``metrics``. ``seeds``: run every
    model once per seed (all models of the first seed, then of the next, ...); default: once, with
    the configured ``seed``. ``pairs``: paired tests beyond the automatic ones (``--pairs``,
    :func:`parse_pairs`; text or ``(base, model)`` tuples). ``resume`` (``--resume``): continue a
    comparison that stopped, from what ``out_dir`` holds (the same command's runs; the runs done are
    kept, not run again) and from each run's last-epoch checkpoint where it is that run's
    (:func:`~recbole_faerec.trainer.resume.matching_checkpoint`).
    Returns the content of ``results.json``.
    """
    if not models:
        raise ValueError("run_comparison needs at least one model")
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ValueError(f"models listed twice: {', '.join(twice)} (use seeds for repeated runs)")
    config_dict = dict(config_dict or {})
    for spec in models:
        parse_model_spec(spec)  # a malformed entry stops the comparison before any training
    _check_variants_take_effect(models, dataset, config_file_list, config_dict)
    pairs = _check_pairs(pairs, models)
    if seeds is not None:
        seeds = _check_seeds(seeds, parse_model_spec(models[0])[0], dataset, config_file_list,
                             config_dict)
    out_dir = out_dir or os.path.join("saved", f"comparison-{dataset}")
    os.makedirs(out_dir, exist_ok=True)
    sample = None
    info: Dict[str, Any] = {}
    plan = [(m, s) for s in seeds or [None] for m in models]
    done: Dict[tuple, Dict[str, Any]] = {}  # each run of the plan that is done: its row
    if resume:
        done, info, sample = _resumed_runs(out_dir, plan, dataset, config_dict, config_file_list)
    report = None
    for name, seed in [run for run in plan if run not in done] or [(None, None)]:
        if name is not None:
            run_dict = config_dict if seed is None else {**config_dict, "seed": seed}
            row = _run_one(name, dataset, config_file_list, run_dict, saved, info, resume)
            model = row.pop("model_obj")
            if sample is None:
                info["seeds"] = list(seeds or [info["seed"]])
                sample = _sample_items(info["n_items"], tsne_items, info["seed"])
            if plots and len(sample) and (seed is None or seed == seeds[0]):  # one map per model
                row["views"] = _views(model, sample)
            done[(name, seed)] = row
            del model
            gc.collect()
        # after each run: a comparison that stops (a crash, a killed job) keeps what it ran, as
        # a part that --merge accepts and --resume continues; the plots wait for the end
        rows = [done[run] for run in plan if run in done]
        missing = [{"model": m, "seed": s if s is not None else info["seed"]}
                   for m, s in plan if (m, s) not in done]
        report = _report(rows, info, config_dict, dataset, sample, config_file_list, missing)
        report["pairs"] = [list(p) for p in pairs]
        _write_outputs(rows, info, sample, report, out_dir, plots and not missing)
    _tell(f"comparison written to {os.path.abspath(out_dir)}")
    return report


def _tell(message: str) -> None:
    """A line of the comparison runner itself (a resume decision, where the results went). Between
    runs RecBole's handlers are gone (each run removes its own), so the root logger would drop an
    INFO line: it goes to stderr then, and to the configured handlers otherwise."""
    root = getLogger()
    if root.handlers and root.isEnabledFor(logging.INFO):
        root.info(message)
    else:
        print(message, file=sys.stderr)


def _resumed_runs(out_dir, plan, dataset, config_dict, config_file_list):
    """``--resume`` of a comparison: the runs its ``out_dir`` already holds, keyed as in ``plan``
    (``(model, seed)``, the seed None without ``seeds``), with its protocol and t-SNE sample.
    The folder must come from the same command: its dataset, ``--key=value`` settings and config
    files (by content) as this one's, and no run that this plan leaves out (the rewritten folder
    would lose it). No folder yet (a comparison killed in its first run): nothing done."""
    from recbole_faerec.trainer.resume import ResumeError

    path = os.path.join(out_dir, "results.json")
    if not os.path.exists(path):
        _tell(f"resume: {path} does not exist yet; every run of the comparison is to do")
        return {}, {}, None
    rows, info, sample, report = load_comparison(out_dir)
    settings = _normalised_settings({**_command_line_settings(), **config_dict})
    theirs = _normalised_settings(report["settings"])
    differs = sorted(k for k in set(settings) | set(theirs)
                     if str(settings.get(k)) != str(theirs.get(k)))
    if report["dataset"] != dataset:
        differs.insert(0, "dataset")
    if [f["sha256"] for f in _config_files(config_file_list)] != \
            [f["sha256"] for f in report.get("config_files", [])]:
        differs.append("config_files")
    if differs:
        raise ResumeError(
            f"cannot resume the comparison in {out_dir}: its runs ran with other settings ("
            + ", ".join(f"{k}: {theirs.get(k, report.get(k))!r} there, "
                        f"{settings.get(k, dataset if k == 'dataset' else None)!r} here"
                        for k in differs[:3])
            + "); give the same command, or another --out_dir")
    done = {}
    for row in rows:
        key = next(((m, s) for m, s in plan if m == row["model"] and s in (None, row["seed"])), None)
        if key is None:
            raise ResumeError(
                f"cannot resume the comparison in {out_dir}: it holds {row['model']} (seed "
                f"{row['seed']}), which this command does not run and its rewritten results would "
                "lose; give that model and seed too, or another --out_dir")
        done[key] = row
    _tell(f"resume: {len(done)} of {len(plan)} runs are done in {out_dir}")
    return done, info, (sample if report.get("tsne_items") is not None else None)


def _check_variants_take_effect(models, dataset, config_file_list, config_dict) -> None:
    """Each variant's settings are what RecBole's Config resolves for its run. A ``--key=value``
    on the command line wins over every other source there, a variant's settings included, so a
    variant that sets the same key would run with the command line's value under its own label:
    an error before any training."""
    from recbole_faerec.quick_start.quick_start import build_config

    for spec in models:
        model, variant = parse_model_spec(spec)
        if not variant:
            continue
        config = build_config(model, dataset, config_file_list, {**config_dict, **variant})
        lost = [k for k in variant if k in config.cmd_config_dict and config[k] != variant[k]]
        if lost:
            raise ModelSpecError(
                f"model entry '{spec}': " + ", ".join(
                    f"{k}={variant[k]!r} would run as {config[k]!r}" for k in lost)
                + ": the command line's setting wins over a variant's in RecBole's Config; drop "
                  f"--{lost[0]} from the command line (give it to each entry that needs it)")


def _check_seeds(seeds, model, dataset, config_file_list, config_dict) -> List[int]:
    """The seeds as ints; a seed that RecBole's Config would not use (e.g. a ``--seed`` on the
    command line, which wins over the runner's) is an error before any training."""
    from recbole_faerec.quick_start.quick_start import build_config

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds}: a seed is listed twice")
    if "seed" in config_dict:
        raise ValueError("give the seed either in seeds or as the 'seed' setting, not both")
    used = build_config(model, dataset, config_file_list, {**config_dict, "seed": seeds[0]})["seed"]
    if used != seeds[0]:
        raise ValueError(f"seeds: the run would use seed {used} instead of {seeds[0]} (a 'seed' "
                         "setting on the command line wins); drop it or the seeds")
    return seeds


def _run_one(name, dataset, config_file_list, config_dict, saved, info,
             resume: bool = False) -> Dict[str, Any]:
    """One model trained and tested under one seed: its row (with ``model_obj``, the trained model,
    for the t-SNE views). Fills ``info`` on the comparison's first run. ``resume``: continue from
    the last-epoch checkpoint where it holds this very run (same settings and seed)."""
    start = time.time()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model_name, variant = parse_model_spec(name)
    run_dict = {**config_dict, **variant}
    run_dict = {**run_dict, "metrics": _metrics(run_dict, config_file_list, model_name, dataset)}
    checkpoint = None
    if resume and saved:
        from recbole_faerec.quick_start.quick_start import build_config
        from recbole_faerec.trainer.resume import matching_checkpoint

        checkpoint, why = matching_checkpoint(build_config(model_name, dataset, config_file_list,
                                                           run_dict))
        _tell(f"resume: {name} (seed {run_dict.get('seed', 'configured')}) "
              + (f"continues from {checkpoint}" if checkpoint else f"starts anew: {why}"))
    result = train_and_test(model_name, dataset, config_file_list, run_dict, saved,
                            resume=checkpoint)
    config, model = result.pop("config"), result.pop("model")
    train_data, test_data = result.pop("train_data"), result.pop("test_data")
    if not info:
        info.update(_protocol(config, train_data, test_data))
    train = result["train_seconds"]
    valid = result["valid_scores"]
    row = {
        "model": name,
        "variant": variant,
        "seed": int(config["seed"]),
        "test": result["test_result"],
        "best_valid": result["best_valid_result"],
        "epochs": len(train),
        "best_epoch": tested_epoch(valid, result.get("valid_epochs"), result["valid_score_bigger"]),
        "train_s_per_epoch": float(np.mean(train)) if train else None,
        "valid_curve": valid,
        "valid_epochs": result.get("valid_epochs"),
        "valid_score_bigger": result["valid_score_bigger"],
        "config": _resolved_settings(config),
        "wall_s": time.time() - start,
        "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                        if torch.cuda.is_available() else None),
        "views": {},
        "per_user": result.get("per_user"),
        "model_obj": model,
    }
    if checkpoint:
        row["resumed_from"] = checkpoint  # results.json says which runs went on after a stop
    del train_data, test_data, result
    return row


#: settings that name where or how a run ran, not what it computed (and the seed, per run)
_RUN_PLACE = {"seed", "device", "gpu_id", "use_gpu", "local_rank", "nproc", "world_size", "offset",
              "ip", "port", "checkpoint_dir", "data_path", "dataset_save_path",
              "dataloaders_save_path", "state", "show_progress", "log_wandb", "wandb_project",
              "worker"}


def _resolved_settings(config) -> Dict[str, Any]:
    """Every setting the run used, as RecBole's Config resolved it (the YAML defaults included),
    but for where it ran: a merge compares them, so a default changed between two parts' runs is
    not merged silently."""
    return {k: v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v)
            for k, v in config.final_config_dict.items() if k not in _RUN_PLACE}


def _check_resolved(dirs, loaded) -> None:
    """Each model's runs in every part resolved the same settings (see :func:`_resolved_settings`);
    parts written before runs recorded them are named in a warning. A setting that only one of two
    runs recorded is a key the plugin added (or removed) between them: a warning that names it,
    since the older code had no such option; a value that differs is a refusal."""
    first: Dict[str, tuple] = {}
    one_sided: Dict[str, set] = {}
    for d, (rows, *_) in zip(dirs, loaded):
        if any("config" not in r for r in rows):
            getLogger().warning(f"merge: {d} was written before runs recorded their resolved "
                                "settings; a default changed between the parts' runs (a YAML "
                                "edit, another version) cannot be told apart there")
        for r in rows:
            if "config" not in r:
                continue
            if r["model"] not in first:
                first[r["model"]] = (d, r["config"])
                continue
            d0, config = first[r["model"]]
            for k in set(config) ^ set(r["config"]):
                one_sided.setdefault(k, set()).add(r["model"])
            diff = sorted(k for k in set(config) & set(r["config"])
                          if config[k] != r["config"][k])
            if diff:
                shown = ", ".join(f"{k} {config[k]!r} vs {r['config'][k]!r}"
                                  for k in diff[:5])
                raise ValueError(f"{d}: {r['model']} ran with other settings than in {d0} "
                                 f"({shown}{', ...' if len(diff) > 5 else ''}; a changed default?)"
                                 "; comparisons can only be merged when they share them")
    if one_sided:
        getLogger().warning(
            "merge: settings recorded by some runs and not by others of the same model (options "
            "added to or removed from the plugin between the parts' runs; their defaults are taken "
            "to be what the other runs did): " + "; ".join(
                f"{k} ({', '.join(sorted(m))})" for k, m in sorted(one_sided.items())))


def _write_outputs(rows, info, sample, report, out_dir, plots) -> None:
    names = list(dict.fromkeys(r["model"] for r in rows))
    report["significance"] = paired_tests(rows, info, all_pairs(names, report.get("pairs")))
    _write_tables(rows, info, out_dir, report.get("missing_runs"), report["significance"])
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=1, default=_json_default)
    views = {f"{i}/{name}": v for i, r in enumerate(rows) for name, v in r["views"].items()}
    tail = {"tail_mask": info["tail_mask"]} if "tail_mask" in info else {}  # old results: none
    np.savez_compressed(os.path.join(out_dir, "views.npz"), **tail, **views)
    per_user = {f"{i}/{key}": v for i, r in enumerate(rows)
                for key, v in (r.get("per_user") or {}).items()}
    if per_user:  # with the tail mask: the paired tail tests need no views.npz (often not kept)
        np.savez_compressed(os.path.join(out_dir, "per_user.npz"), **tail, **per_user)
    if plots:
        plot_groups(_plot_rows(rows), info, os.path.join(out_dir, "groups.png"))
        plot_tsne(rows, info, sample, os.path.join(out_dir, "tsne.png"), seed=info["seed"])


def load_comparison(out_dir: str):
    """``(rows, info, sample, report)`` of a comparison written by :func:`run_comparison`."""
    with open(os.path.join(out_dir, "results.json")) as f:
        report = json.load(f)
    info = dict(report["protocol"])
    sample = np.asarray(report["tsne_items"] or [], dtype=np.int64)
    info.setdefault("seeds", [info["seed"]])  # results written before --seeds
    rows = [dict(r, views={}, per_user=None) for r in report["runs"]]
    for r in rows:
        r.setdefault("seed", info["seed"])
        curve = r.get("valid_curve")
        if curve and not r.get("valid_epochs") and r.get("best_epoch") == curve.index(max(curve)):
            # written before the best epoch was the tested one (RecBole keeps the last tie), by a
            # run that validated after every epoch (its first best's index was its epoch)
            r["best_epoch"] = tested_epoch(curve)
    path = os.path.join(out_dir, "per_user.npz")
    if os.path.exists(path):
        with np.load(path) as per_user:
            for key in per_user.files:
                if "/" not in key:  # the tail mask
                    info[key] = per_user[key]
                    continue
                index, name = key.split("/", 1)
                if rows[int(index)]["per_user"] is None:
                    rows[int(index)]["per_user"] = {}
                rows[int(index)]["per_user"][name] = per_user[key]
    path = os.path.join(out_dir, "views.npz")
    if os.path.exists(path):
        with np.load(path) as views:
            info["tail_mask"] = views["tail_mask"]
            for key in views.files:
                if "/" in key:
                    index, name = key.split("/", 1)
                    rows[int(index)]["views"][name] = views[key]
    return rows, info, sample, report


#: what may differ between the parts of one comparison: the seeds each part ran
_PER_PART = ("tail_mask", "seed", "seeds")
#: command-line settings that may differ between parts whose runs all recorded their settings
#: (each model's runs must still share them)
_BUDGET = ("epochs", "stopping_step")


def _normalised_settings(settings: Dict[str, Any]) -> Dict[str, Any]:
    """A comparison's recorded settings with ``data_path`` as a normalised path (``data/`` and
    ``data`` are one folder), as a merge of parts and a resumed comparison compare them."""
    out = dict(settings)
    if out.get("data_path"):
        out["data_path"] = os.path.normpath(str(out["data_path"]))
    return out


def _comparable_settings(settings: Dict[str, Any]) -> Dict[str, Any]:
    """A part's settings as the merge compares them (:func:`_normalised_settings`; the protocol's
    data facts must match as well), without ``seed`` (a part run with ``--seed=N`` differs from
    the others in its seed only, as one run with ``--seeds``)."""
    return {k: v for k, v in _normalised_settings(settings).items() if k not in _PER_PART}


def merge_comparisons(dirs: List[str], out_dir: str, plots: bool = True,
                      models: Optional[List[str]] = None, pairs=None,
                      seeds: Optional[List[int]] = None) -> Dict[str, Any]:
    """One table and one set of plots from comparisons run separately (e.g. in parallel, or one
    seed at a time) on the same dataset under the same settings; refuses to merge different
    protocols. Parts may differ in their seeds (``--seeds``): the table then averages over all of
    them; the t-SNE map is drawn on the items of the first part that kept its views
    (:func:`_map_items`; a run of the same model and seed twice is refused).
    Parts whose runs all recorded their settings may differ in their budgets (``epochs``,
    ``stopping_step``) as long as each model has one (:func:`_check_resolved`); the training line
    states them. ``models``: only these rows (model names as in the tables, variants included), in
    this order; a name no part holds is an error. ``pairs``: paired tests beyond the automatic ones
    (``--pairs``); the parts' own ``--pairs`` are kept where both models are merged. ``seeds``:
    only the runs of these seeds (``--seeds`` with ``--merge``); a seed no part ran is an error."""
    only_seeds = list(seeds) if seeds is not None else None
    loaded = [load_comparison(d) for d in dirs]
    masks = [part[1]["tail_mask"] for part in loaded if "tail_mask" in part[1]]
    if masks:  # one protocol, one mask: a part saved without it borrows another's
        for part in loaded:
            part[1].setdefault("tail_mask", masks[0])
    else:
        getLogger().warning("merge: no part kept its tail mask (views.npz or a per_user.npz with "
                            "it): the merged table has no paired tail tests and no plots")
    if models is not None:
        held = {r["model"] for part in loaded for r in part[0]}
        missing = [m for m in models if m not in held]
        if missing:
            raise ValueError(f"merge: no part holds {', '.join(missing)} (they hold "
                             f"{', '.join(sorted(held))})")

    def wanted(run) -> bool:  # a run (or a run not done) of the models and seeds asked for
        return ((models is None or run["model"] in models)
                and (only_seeds is None or run["seed"] in only_seeds))

    if only_seeds is not None:
        ran = {r["seed"] for part in loaded for r in part[0]
               if models is None or r["model"] in models}
        missing = [str(s) for s in only_seeds if s not in ran]
        if missing:
            raise ValueError(f"merge: no part ran seed {', '.join(missing)}"
                             + (" with these models" if models is not None else "")
                             + f" (they ran {', '.join(map(str, sorted(ran)))})")
    loaded = [([r for r in part[0] if wanted(r)], *part[1:]) for part in loaded]
    _check_resolved(dirs, loaded)
    # the runs the parts' unfinished comparisons (a killed job, a crash) never ran, unless another
    # part ran them (the usual way to finish one)
    held_runs = {(r["model"], r["seed"]) for part in loaded for r in part[0]}
    missing_runs = []
    for d, (_, _, _, part_report) in zip(dirs, loaded):
        missing = [r for r in part_report.get("missing_runs", [])
                   if wanted(r) and (r["model"], r["seed"]) not in held_runs
                   and r not in missing_runs]
        if missing:
            getLogger().warning(f"merge: {d} is an unfinished comparison; its finished runs are "
                                f"merged, these never ran: {_run_names(missing)}")
            missing_runs += missing
    rows, info, sample, report = loaded[0]
    rows = list(rows)
    seeds = list(info["seeds"])
    budgets = set()  # the budget settings the parts' command lines differ in
    for d, (more_rows, more_info, more_sample, more_report) in zip(dirs[1:], loaded[1:]):
        same = ({k: v for k, v in more_info.items() if k not in _PER_PART}
                == {k: v for k, v in info.items() if k not in _PER_PART})
        same_seeds = more_info["seeds"] == info["seeds"]
        files = [[f["sha256"] for f in r["config_files"]] for r in (report, more_report)
                 if "config_files" in r]  # results written before they were recorded: unknown
        ours, theirs = (_comparable_settings(r["settings"]) for r in (report, more_report))
        budget = {k for k in _BUDGET if ours.get(k) != theirs.get(k)}
        if budget:
            if not all("config" in r for r in rows + more_rows):
                raise ValueError(f"{d}: another {' and '.join(sorted(budget))} than {dirs[0]}, and "
                                 "some runs were written before runs recorded their settings, so "
                                 "each model's budget cannot be stated; comparisons can only be "
                                 "merged when they share it")
            # every run recorded its budget: each model keeps its own (the per-model check above
            # refuses one model under two), and the training line states them
            budgets |= budget
            ours, theirs = ({k: v for k, v in x.items() if k not in _BUDGET} for x in (ours, theirs))
        if not same or ours != theirs \
                or (len(files) == 2 and files[0] != files[1]) \
                or (same_seeds and not np.array_equal(more_sample, sample)):
            raise ValueError(f"{d}: another dataset, protocol, settings or config file than {dirs[0]}; "
                             "comparisons can only be merged when they share them")
        for row in more_rows:
            twice = [r for r in rows if r["model"] == row["model"] and r["seed"] == row["seed"]]
            if twice:
                raise ValueError(f"{d}: {row['model']} with seed {row['seed']} is already in an "
                                 "earlier part")
        seeds += [s for s in more_info["seeds"] if s not in seeds]
        rows += more_rows
    sample = _map_items(loaded, sample, plots)
    if models is not None:
        rows.sort(key=lambda r: models.index(r["model"]))  # stable: seeds keep the parts' order
    if models is not None or only_seeds is not None:
        seeds = [s for s in seeds if any(r["seed"] == s for r in rows)]
    info = dict(info, seeds=seeds)
    names = list(dict.fromkeys(r["model"] for r in rows))
    kept = [tuple(p) for part in loaded for p in part[3].get("pairs", [])
            if p[0] in names and p[1] in names]
    pairs = list(dict.fromkeys(kept + _check_pairs(pairs, names)))
    if budgets:
        getLogger().warning(f"merge: the parts ran under other budgets ({', '.join(sorted(budgets))}); "
                            "each model keeps its own, as the training line of results.md states")
        report = dict(report, settings={**report["settings"],
                                        **{k: "per model" for k in budgets}})
    os.makedirs(out_dir, exist_ok=True)
    if report.get("tsne_items") is not None:
        report = dict(report, tsne_items=[int(i) for i in sample])
    merged = dict(report, protocol={**report["protocol"], "seeds": seeds},
                  runs=[_public(r) for r in rows], missing_runs=missing_runs,
                  pairs=[list(p) for p in pairs])
    _write_outputs(rows, info, sample, merged, out_dir, plots and "tail_mask" in info)
    return merged


def _map_items(loaded, sample, plots: bool):
    """The items of a merged t-SNE map: those of the first part that kept its runs' views
    (``views.npz``; a comparison draws its items from its first seed). Views of other items (a
    part that began with another seed) are dropped; a model left without a panel is said."""
    kept = next((part_sample for rows, _, part_sample, _ in loaded if any(r["views"] for r in rows)),
                sample)
    for rows, _, part_sample, _ in loaded:
        if not np.array_equal(part_sample, kept):  # False for other lengths too
            for row in rows:
                row["views"] = {}
    drawn = {r["model"] for rows, *_ in loaded for r in rows if r["views"]}
    left = list(dict.fromkeys(r["model"] for rows, *_ in loaded for r in rows
                              if r["model"] not in drawn))
    if plots and left and any(len(part[2]) for part in loaded):
        getLogger().warning(f"merge: the t-SNE map has no panel for {', '.join(left)}: "
                            + ("no part kept their views on the map's items (those of the first "
                               "part with a views.npz)" if drawn else
                               "no part kept its views (views.npz), so there is no map"))
    return kept


def _metrics(config_dict, config_file_list, model, dataset) -> List[str]:
    """The configured metrics (command line, dict, files or props) plus every tail-aware metric,
    where the model's split is leave-one-out (the tail-aware metrics need one target per user;
    e.g. RecBole's general models split randomly by default)."""
    from recbole_faerec.quick_start.quick_start import build_config

    config = build_config(model, dataset, config_file_list, config_dict)
    configured = config["metrics"]
    configured = [configured] if isinstance(configured, str) else list(configured)
    if "LS" not in (config["eval_args"]["split"] or {}):
        getLogger().warning(f"{model}: split {config['eval_args']['split']} is not leave-one-out; "
                            "its comparison row has no tail-aware metrics")
        return configured
    lower = {m.lower() for m in configured}
    return configured + [m for m in ALL_TAIL_METRICS if m.lower() not in lower]


def _protocol(config, train_data, test_data) -> Dict[str, Any]:
    """Head/tail and group facts of the test data, shared by every model (same data, same seed)."""
    dataset = test_data._dataset
    popularity = evaluation_popularity(train_data._dataset, config)
    ratio = head_ratio(config)
    edges = list(group_edges(config))
    targets = dataset.inter_feat[dataset.iid_field].numpy()
    counts = popularity.counts
    groups = group_of(counts[targets], edges)
    item_groups = group_of(counts[1:], edges)
    tail = popularity.tail_mask(ratio)
    names = popularity_groups(edges)
    return {
        "dataset": config["dataset"],
        "seed": int(config["seed"]),
        "topk": list(config["topk"]),
        "head_ratio": ratio,
        "popularity_source": config["popularity_source"] if hasattr(dataset, ATTRIBUTE) else "train",
        "n_items": popularity.n_items,
        "n_head_items": int(popularity.head_size(ratio)),
        "min_head_count": int(counts[popularity.head_mask(ratio)].min()),
        "test_rows": int(len(targets)),
        "tail_test_rows": int(tail[targets].sum()),
        "groups": names,
        "group_items": [int((item_groups == i).sum()) for i in range(len(names))],
        "group_test_rows": [int((groups == i).sum()) for i in range(len(names))],
        "tail_mask": tail,
        "history_excluded": bool(config["eval_exclude_history"]),
        "history_score": str(history_score(config)),
        "targets_in_history": targets_in_history(dataset),
    }


def _sample_items(n_items: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, n_items + 1), size=min(size, n_items), replace=False))


def _views(model, items: np.ndarray) -> Dict[str, np.ndarray]:
    """The item representations to map: FAERec's (and later baselines') ID and LLM views, or a
    plain backbone's item table."""
    ids = torch.as_tensor(items, dtype=torch.long)
    model.eval()
    if hasattr(model, "item_embedding_views"):
        return {k: v.detach().cpu().numpy() for k, v in model.item_embedding_views(ids).items()}
    table = getattr(model, "item_embedding", None)
    if isinstance(table, torch.nn.Embedding):
        return {"ID": table.weight.detach()[ids.to(table.weight.device)].cpu().numpy()}
    return {}


def _k(info) -> int:
    return 10 if 10 in info["topk"] else info["topk"][0]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4f}"


def markdown_table(rows, info, tests=None) -> str:
    """The summary table (at K = 10, or the first ``topk``) and the popularity-group table, per
    run, or per model as mean ± sample std over the seeds where a model ran with several; then the
    paired tests ``tests`` (default :func:`paired_tests` of the automatic pairs), where the
    comparison has a pair."""
    models = aggregate(rows)
    if any(len(m["seeds"]) > 1 for m in models):
        text = _seeds_table(models, info)
    else:
        text = _single_table(rows, info)
    training = training_text(rows)
    if training:
        first_break = text.index("\n\n")  # after the evaluation protocol
        text = text[:first_break] + "\n\n" + training + text[first_break:]
    tests = paired_tests(rows, info) if tests is None else tests
    return text + _significance_text(tests, info)


#: the training settings every results.md states (RecBole's names), in this order
TRAINING_KEYS = ("loss_type", "embedding_size", "hidden_size", "MAX_ITEM_LIST_LENGTH",
                 "train_positions", "padding_side", "train_batch_size", "learning_rate",
                 "hidden_dropout_prob", "epochs", "stopping_step", "valid_metric", "eval_start_epoch")


def _training_value(config, key):
    value = config.get(key)
    if key == "loss_type" and value in ("BPR", "BCE"):
        negatives = (config.get("train_neg_sample_args") or {}).get("sample_num")
        return f"{value} ({negatives} sampled negative{'s' if negatives != 1 else ''} a target)"
    return value


def training_text(rows) -> str:
    """One line with the training protocol of the runs as RecBole resolved it (``config`` of each
    run): a value shared by every model once, one that differs with the models that have it. Empty
    when no run recorded its settings (parts written before they were)."""
    recorded = [r for r in rows if r.get("config")]
    if not recorded:
        return ""
    parts = []
    for key in TRAINING_KEYS:
        by_value: Dict[str, List[str]] = {}
        for r in recorded:
            if key not in r["config"]:
                continue
            models = by_value.setdefault(str(_training_value(r["config"], key)), [])
            if r["model"] not in models:
                models.append(r["model"])
        if not by_value:
            continue
        ranked = sorted(by_value.items(), key=lambda kv: -len(kv[1]))  # the most common first
        text = f"{key} {ranked[0][0]}"
        if len(ranked) > 1:
            text += " (" + "; ".join(f"{value} for {', '.join(models)}" for value, models in ranked[1:]) + ")"
        parts.append(text)
    unrecorded = sorted({r["model"] for r in rows if not r.get("config")})
    note = (f" Not recorded for {', '.join(unrecorded)} (written before runs recorded their "
            f"settings).") if unrecorded else ""
    return "Training, as RecBole resolved it: " + ", ".join(parts) + "." + note


def _single_table(rows, info) -> str:
    """The table of one run per model (one seed)."""
    k = _k(info)
    ks = info["topk"]
    head = ["model"]
    keys = []
    for label, key in SUMMARY[:2]:
        for kk in ks:
            head.append(f"{label}@{kk}")
            keys.append(f"{key}@{kk}")
    for label, key in SUMMARY[2:]:
        head.append(f"{label}@{k}")
        keys.append(f"{key}@{k}")
    gpu = any(r.get("peak_gpu_mb") for r in rows)
    head += ["s/epoch", "epochs (best)"] + (["peak GPU MB"] if gpu else [])
    lines = ["| " + " | ".join(head) + " |",
             "|---" + "|---:" * (len(head) - 2 - gpu) + "|---|" + ("---:|" if gpu else "")]
    for r in rows:
        vals = [_fmt(r["test"].get(key)) for key in keys]
        lines.append(f"| {r['model']} | " + " | ".join(vals)
                     + f" | {r['train_s_per_epoch']:.1f} | {r['epochs']} ({r['best_epoch']}) |"
                     + (f" {r['peak_gpu_mb']:.0f} |" if gpu else ""))
    groups = [(g, n, it) for g, n, it in zip(info["groups"], info["group_test_rows"], info["group_items"])
              if it > 0]
    ghead = ["model"] + [f"{g} ({n} users)" for g, n, _ in groups]
    glines = ["| " + " | ".join(ghead) + " |", "|---" + "|---:" * (len(ghead) - 1) + "|"]
    for metric in ("groupndcg", "grouphit"):
        for r in rows:
            vals = [_fmt(r["test"].get(f"{metric}_{g}@{k}")) for g, _, _ in groups]
            label = "NDCG" if metric == "groupndcg" else "Hit"
            glines.append(f"| {r['model']} {label}@{k} | " + " | ".join(vals) + " |")
    return _intro(info) + "\n\n" + "\n".join(lines) + "\n\nPer popularity group of the target item:\n\n" \
        + "\n".join(glines) + "\n"


def _intro(info) -> str:
    return (f"{info['dataset']}: {info['test_rows']} test users, {info['tail_test_rows']} with a tail "
            f"target ({100 * info['tail_test_rows'] / max(info['test_rows'], 1):.1f} %); head = top "
            f"{info['head_ratio']:g} of {info['n_items']} items = {info['n_head_items']} items "
            f"(popularity >= {info['min_head_count']}, counted over "
            f"{'the whole data' if info['popularity_source'] == 'all' else 'the training split'}). "
            + _history_text(info))


def _summary_keys(info):
    """The summary table's (column label, metric key) pairs."""
    k = _k(info)
    cols = [(f"{label}@{kk}", f"{key}@{kk}") for label, key in SUMMARY[:2] for kk in info["topk"]]
    return cols + [(f"{label}@{k}", f"{key}@{k}") for label, key in SUMMARY[2:]]


def aggregate(rows) -> List[Dict[str, Any]]:
    """Per model (in the order of their first run): its ``seeds``, its ``runs`` and, per test
    metric, the ``mean`` and the sample standard deviation ``std`` (``ddof=1``; ``nan`` for one
    seed) over its runs."""
    models: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        entry = models.setdefault(r["model"], {"model": r["model"], "seeds": [], "runs": []})
        entry["seeds"].append(r.get("seed"))
        entry["runs"].append(r)
    for entry in models.values():
        keys: List[str] = []
        for r in entry["runs"]:
            keys += [k for k in r["test"] if k not in keys]
        entry["mean"], entry["std"] = {}, {}
        for key in keys:
            values = np.array([r["test"].get(key, np.nan) for r in entry["runs"]], dtype=float)
            entry["mean"][key] = float(np.mean(values))
            entry["std"][key] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return list(models.values())


def _mean_std(entry, key) -> str:
    mean, std = entry["mean"].get(key), entry["std"].get(key)
    if mean is None or math.isnan(mean) or std is None or math.isnan(std):
        return _fmt(mean)
    return f"{mean:.4f} ± {std:.4f}"


def _seeds_table(models, info) -> str:
    """The tables of a comparison over several seeds: mean ± sample std per model."""
    k = _k(info)
    cols = _summary_keys(info)
    gpu = any(r.get("peak_gpu_mb") for m in models for r in m["runs"])
    head = ["model", "seeds"] + [label for label, _ in cols] + ["s/epoch", "epochs (best)"] \
        + (["peak GPU MB"] if gpu else [])
    lines = ["| " + " | ".join(head) + " |",
             "|---" + "|---:" * (len(head) - 2 - gpu) + "|---|" + ("---:|" if gpu else "")]
    for m in models:
        runs = m["runs"]
        seconds = [r["train_s_per_epoch"] for r in runs if r.get("train_s_per_epoch") is not None]
        epochs = ", ".join(str(r["epochs"]) for r in runs)
        best = ", ".join(str(r["best_epoch"]) for r in runs)
        lines.append(f"| {m['model']} | {len(runs)} | "
                     + " | ".join(_mean_std(m, key) for _, key in cols)
                     + f" | {np.mean(seconds) if seconds else float('nan'):.1f} | {epochs} ({best}) |"
                     + (f" {max(r.get('peak_gpu_mb') or 0 for r in runs):.0f} |" if gpu else ""))
    groups = [(g, n) for g, n, it in zip(info["groups"], info["group_test_rows"], info["group_items"])
              if it > 0]
    ghead = ["model"] + [f"{g} ({n} users)" for g, n in groups]
    glines = ["| " + " | ".join(ghead) + " |", "|---" + "|---:" * (len(ghead) - 1) + "|"]
    for metric, label in (("groupndcg", "NDCG"), ("grouphit", "Hit")):
        for m in models:
            glines.append(f"| {m['model']} {label}@{k} | "
                          + " | ".join(_mean_std(m, f"{metric}_{g}@{k}") for g, _ in groups) + " |")
    seeds = info.get("seeds") or sorted({s for m in models for s in m["seeds"]})
    text = (f"Each model ran once per seed ({', '.join(str(s) for s in seeds)}; RecBole's `seed`, the "
            "same data split); a cell is the mean ± the sample standard deviation (ddof = 1) over "
            "the model's runs (the seeds column), a lone value a model with one run. "
            "Epochs and best epochs are per seed.")
    return _intro(info) + "\n\n" + text + "\n\n" + "\n".join(lines) \
        + "\n\nPer popularity group of the target item:\n\n" + "\n".join(glines) + "\n"


def _plot_rows(rows):
    """One bar per model in the group plot: its run, or its mean over the seeds."""
    models = aggregate(rows)
    if all(len(m["runs"]) == 1 for m in models):
        return rows
    return [{"model": m["model"], "test": m["mean"]} for m in models]


def model_pairs(names: List[str]) -> List[tuple]:
    """``(B, M)`` for each model ``M`` named ``<Something>_<B>`` whose backbone ``B`` is in
    ``names`` too (e.g. ``("SASRec", "FAERec_SASRec")``), ``(M, V)`` for each variant
    ``V = M[...]`` of a model ``M`` in ``names`` (an ablation against the full model) and ``(B, V)``
    for the backbone ``B`` of ``M`` (``FAERec_SASRec[item_tau=0.1]`` against ``SASRec``, also when
    ``FAERec_SASRec`` itself is not in the list), and for a
    combination of methods each of its parts alone (``FAERec_TADA_SASRec`` against
    ``FAERec_SASRec`` as well as ``TADA_SASRec``). Where the backbone ``B`` itself is not in the
    list, its variants stand in for it (``FAERec_SASRec[epochs=33]`` against
    ``SASRec[epochs=50]``: each under its own budget, as a reproduction runs them)."""
    pairs = []
    for name in names:
        stem = name.split("[", 1)[0]  # a variant's model
        parts = name.split("_") if "[" not in name else []
        # the combination without one of its methods: FAERec_TADA_SASRec -> FAERec_SASRec
        alone = {"_".join(parts[:i] + parts[i + 1:]) for i in range(len(parts) - 1)} \
            if len(parts) > 2 else set()
        for base in names:
            if base == name or (base, name) in pairs:
                continue
            base_stem = base.split("[", 1)[0]
            backbone_variant = "[" in base and base_stem not in names \
                and stem.endswith("_" + base_stem)
            if name.endswith("_" + base) or stem.endswith("_" + base) \
                    or ("[" in name and stem == base) or base in alone or backbone_variant:
                pairs.append((base, name))
    return pairs


def per_user_ndcg(rank: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@K from the 1-based rank of its one target (0: not in the top list)."""
    rank = np.asarray(rank)
    hit = (rank > 0) & (rank <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(rank, 1) + 1), 0.0)


def paired_tests(rows, info, pairs: Optional[List[tuple]] = None) -> List[Dict[str, Any]]:
    """The paired tests of each pair ``(B, M)`` (default :func:`model_pairs`) over the test users.

    Each user's NDCG@K (K = 10, or the first ``topk``) is averaged over the seeds that both models
    ran; ``M - B`` per user is then tested with scipy.stats' two-sided Wilcoxon signed-rank test
    (``zero_method="pratt"``: users with equal outcomes are ranked, then left out) and paired
    t-test (``ttest_rel``), on all test users and on those whose target is a tail item. Where the
    per-user outcomes of the two models are identical, both p-values are 1.0 (scipy's Wilcoxon
    test refuses all-zero differences). A pair without per-user outcomes (results written before
    they were kept) is left out; one whose runs tested other users or targets, or whose models
    share no seed, gets a ``note``.
    """
    k = _k(info)
    if pairs is None:
        pairs = model_pairs(list(dict.fromkeys(r["model"] for r in rows)))
    out = []
    for base, model in pairs:
        runs = {name: {r.get("seed"): r["per_user"] for r in rows
                       if r["model"] == name and r.get("per_user") is not None}
                for name in (base, model)}
        seeds = [s for s in runs[base] if s in runs[model]]
        entry: Dict[str, Any] = {"model": model, "base": base, "metric": f"ndcg@{k}",
                                 "seeds": seeds}
        if not seeds:
            if runs[base] and runs[model]:  # both have outcomes, of other seeds: say so
                entry["note"] = (f"no seed that both ran ({base}: "
                                 f"{', '.join(map(str, runs[base]))}; {model}: "
                                 f"{', '.join(map(str, runs[model]))}): no paired test")
                out.append(entry)
            continue
        outcomes = [runs[name][s] for s in seeds for name in (base, model)]
        first = outcomes[0]
        same = all(len(o["rank"]) == len(first["rank"])
                   and all(np.array_equal(o[key], first[key]) for key in ("target", "user")
                           if key in o and key in first)
                   for o in outcomes)
        if not same:
            entry["note"] = "the runs tested other users or targets: no paired test"
            out.append(entry)
            continue
        b = np.mean([per_user_ndcg(runs[base][s]["rank"], k) for s in seeds], axis=0)
        m = np.mean([per_user_ndcg(runs[model][s]["rank"], k) for s in seeds], axis=0)
        entry["all"] = _paired(m, b)
        targets = first.get("target")
        if "tail_mask" in info and targets is not None and (targets > 0).all():
            tail = np.asarray(info["tail_mask"])[targets]
            entry["tail"] = _paired(m[tail], b[tail])
        out.append(entry)
    return out


def _paired(m: np.ndarray, b: np.ndarray) -> Dict[str, Any]:
    """Mean difference, relative change and the two p-values of ``m`` against ``b`` (paired)."""
    from scipy import stats

    n = len(m)
    result: Dict[str, Any] = {"n_users": int(n), "base_mean": None, "model_mean": None,
                              "mean_diff": None, "relative_change": None, "p_wilcoxon": None,
                              "p_ttest": None}
    if n == 0:
        return result
    diff = m - b
    base_mean = float(np.mean(b))
    result.update(base_mean=base_mean, model_mean=float(np.mean(m)), mean_diff=float(np.mean(diff)),
                  relative_change=float(np.mean(diff)) / base_mean if base_mean > 0 else None)
    if not diff.any():
        result.update(p_wilcoxon=1.0, p_ttest=1.0, identical=True)
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_w = float(stats.wilcoxon(m, b, zero_method="pratt", alternative="two-sided").pvalue)
        p_t = float(stats.ttest_rel(m, b).pvalue)
    result.update(p_wilcoxon=None if math.isnan(p_w) else p_w,
                  p_ttest=None if math.isnan(p_t) else p_t)
    return result


def _fmt_p(p) -> str:
    return "—" if p is None else f"{p:.3g}"


def _significance_text(tests, info) -> str:
    """The "Significance" section of ``results.md`` (empty without a tested pair)."""
    if not tests:
        return ""
    k = _k(info)
    lines = ["| model vs base | users | seeds | base | model | mean diff | rel. change | "
             "p Wilcoxon | p t-test |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for t in tests:
        if "note" in t:
            notes.append(f"{t['model']} vs {t['base']}: {t['note']}.")
            continue
        for subset in ("all", "tail"):
            r = t.get(subset)
            if r is None:
                continue
            rel = r["relative_change"]
            lines.append(f"| {t['model']} vs {t['base']} ({subset}) | {r['n_users']} | "
                         f"{len(t['seeds'])} | {_fmt(r['base_mean'])} | {_fmt(r['model_mean'])} | "
                         + ("—" if r["mean_diff"] is None else f"{r['mean_diff']:+.4f}") + " | "
                         + ("—" if rel is None else f"{100 * rel:+.1f} %") + " | "
                         + f"{_fmt_p(r['p_wilcoxon'])} | {_fmt_p(r['p_ttest'])} |")
    text = (f"\n## Significance\n\nPaired over the test users (all, and those with a tail target): "
            f"each user's NDCG@{k} averaged over the seeds both models ran, the model's minus the "
            "base's; two-sided p-values of the Wilcoxon signed-rank test (scipy.stats.wilcoxon, "
            "zero_method='pratt') and the paired t-test (scipy.stats.ttest_rel); p = 1 where the "
            "two models' per-user outcomes are identical, — where a test has no users.\n\n")
    return text + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _history_text(info) -> str:
    """How the ranking treats each user's own earlier items (``eval_exclude_history``)."""
    if "history_excluded" not in info:  # results written before the key existed
        return ""
    repeats = f"{info['targets_in_history']} test targets repeat an item of their input sequence"
    if not info["history_excluded"]:
        return f"Full ranking with the users' history items ranked (RecBole's protocol); {repeats}."
    if info["history_score"] == "-inf":
        return (f"Full ranking without the items of each user's input sequence "
                f"(eval_exclude_history); {repeats} and count as misses.")
    return (f"Full ranking with each user's input-sequence items scored {info['history_score']} "
            f"(eval_history_score, the authors' protocol); {repeats}.")


def _write_tables(rows, info, out_dir, missing_runs=None, tests=None) -> None:
    """``results.md`` and ``results.csv``; ``missing_runs``: the runs an unfinished comparison
    has not done (named at the top of ``results.md``); ``tests``: its paired tests."""
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        if missing_runs:
            f.write(f"**Unfinished comparison**: {len(rows)} of {len(rows) + len(missing_runs)} runs "
                    f"done; not run: "
                    f"{_run_names(missing_runs)}.\n\n")
        f.write(markdown_table(rows, info, tests))
    metric_keys: List[str] = []
    for r in rows:
        metric_keys += [k for k in r["test"] if k not in metric_keys]
    models = aggregate(rows)
    if any(len(m["seeds"]) > 1 for m in models):
        _write_seeds_csv(models, metric_keys, out_dir)
        return
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", *metric_keys, "train_s_per_epoch", "epochs", "best_epoch"])
        for r in rows:
            writer.writerow([r["model"], *[r["test"].get(k, "") for k in metric_keys],
                             f"{r['train_s_per_epoch']:.3f}", r["epochs"], r["best_epoch"]])


def _write_seeds_csv(models, metric_keys, out_dir) -> None:
    """``results.csv`` over several seeds: per model one row per seed, then its ``mean`` and
    ``std`` (sample standard deviation, ddof = 1) rows."""
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "seed", *metric_keys, "train_s_per_epoch", "epochs", "best_epoch"])
        for m in models:
            for r in m["runs"]:
                writer.writerow([m["model"], r.get("seed"), *[r["test"].get(k, "") for k in metric_keys],
                                 f"{r['train_s_per_epoch']:.3f}", r["epochs"], r["best_epoch"]])
            for label, ddof in (("mean", None), ("std", 1)):
                stat = m[label]
                extra = []
                for key in ("train_s_per_epoch", "epochs", "best_epoch"):
                    values = [float(r[key]) for r in m["runs"] if r.get(key) is not None]
                    if not values or (ddof and len(values) < 2):
                        extra.append("")
                    else:
                        extra.append(f"{np.std(values, ddof=1) if ddof else np.mean(values):.3f}")
                writer.writerow([m["model"], label, *[_csv_value(stat.get(k)) for k in metric_keys],
                                 *extra])


def _csv_value(value) -> str:
    return "" if value is None or math.isnan(value) else repr(value)


def _command_line_settings() -> Dict[str, str]:
    """The ``--key=value`` settings of this process's command line that RecBole's Config reads,
    without the ones that differ between the parts of a comparison."""
    skip = {"model", "m", "dataset", "d", "out_dir", "tsne_items", "config_files", "seeds", "resume"}
    settings = {}
    for arg in sys.argv[1:]:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            if key not in skip:
                settings[key] = value
    return settings


def _config_files(config_file_list) -> List[Dict[str, str]]:
    """Each ``--config_files`` entry as given and the SHA-256 of the file it resolved to: a merge
    compares the contents, since the settings record only the command line's ``--key=value``."""
    from recbole_faerec.config.configurator import resolve_config_file

    out = []
    for path in config_file_list or []:
        with open(resolve_config_file(path), "rb") as f:
            out.append({"path": path, "sha256": hashlib.sha256(f.read()).hexdigest()})
    return out


def _run_names(runs) -> str:
    return ", ".join(f"{r['model']} (seed {r['seed']})" for r in runs)


def _report(rows, info, config_dict, dataset, sample, config_file_list=None,
            missing_runs=None) -> Dict[str, Any]:
    public = {k: v for k, v in info.items() if k != "tail_mask"}
    return {
        "missing_runs": list(missing_runs or []),
        "dataset": dataset,
        "settings": {**_command_line_settings(), **{k: v for k, v in config_dict.items()}},
        "config_files": _config_files(config_file_list),
        "protocol": public,
        "tsne_items": sample,
        "runs": [_public(r) for r in rows],
    }


def _public(row) -> Dict[str, Any]:
    """A run as ``results.json`` holds it (the views and per-user arrays go to the .npz files)."""
    return {k: v for k, v in row.items() if k not in ("views", "per_user", "model_obj")}


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_groups(rows, info, path: str) -> None:
    """Grouped bars: Hit@K and NDCG@K per popularity group, one bar per model (paper Figure 4)."""
    plt = _pyplot()
    k = _k(info)
    groups = [g for g, items in zip(info["groups"], info["group_items"]) if items > 0]
    counts = [n for n, items in zip(info["group_test_rows"], info["group_items"]) if items > 0]
    fig, axes = plt.subplots(1, 2, figsize=(5 + 1.6 * len(groups), 4.6))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(groups))
    # tab20 comes in (dark, light) pairs: a backbone and its FAERec version get one hue
    colours = [plt.get_cmap("tab20")((i ^ 1) % 20) for i in range(len(rows))]
    for ax, metric, label in ((axes[0], "grouphit", "Hit"), (axes[1], "groupndcg", "NDCG")):
        for i, r in enumerate(rows):
            values = [r["test"].get(f"{metric}_{g}@{k}", float("nan")) for g in groups]
            ax.bar(x + (i - (len(rows) - 1) / 2) * width, np.nan_to_num(values), width,
                   label=r["model"], color=colours[i])
        ax.set_xticks(x)
        ax.set_xticklabels([f"{g}\n({n})" for g, n in zip(groups, counts)])
        ax.set_xlabel("interactions of the target item (test users)")
        ax.set_ylabel(f"{label}@{k}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    ncol = min(len(rows), 4)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"{info['dataset']}: accuracy per popularity group")
    fig.tight_layout(rect=(0, 0.06 * math.ceil(len(rows) / ncol), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(rows, info, items, path: str, seed: int = 0) -> None:
    """t-SNE (scikit-learn) of the sampled items' representations, one panel per model: ID and LLM
    views in one map where a model has both (paper Figure 5); tail items drawn hollow."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    panels = [r for r in rows if r["views"]]
    if not panels:
        return
    tail = info["tail_mask"][items]
    cols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 4 * nrows), squeeze=False)
    colours = {"ID": "tab:blue", "LLM": "tab:orange"}
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, panels):
        names = list(r["views"])
        stacked = np.concatenate([_unit(r["views"][n]) for n in names])
        perplexity = float(min(30, max(2, (len(stacked) - 1) // 3)))
        points = TSNE(n_components=2, init="pca", perplexity=perplexity,
                      random_state=seed).fit_transform(stacked)
        for j, name in enumerate(names):
            p = points[j * len(items):(j + 1) * len(items)]
            colour = colours.get(name, f"C{j + 2}")
            ax.scatter(p[~tail, 0], p[~tail, 1], s=9, c=colour, label=f"{name} (head)")
            ax.scatter(p[tail, 0], p[tail, 1], s=9, facecolors="none", edgecolors=colour, linewidths=0.6,
                       label=f"{name} (tail)")
        # a variant's settings make long names: wrapped to the panel's width
        ax.set_title("\n".join(textwrap.wrap(r["model"], 44, break_on_hyphens=False)), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=1.5)
    fig.suptitle(f"{info['dataset']}: t-SNE of {len(items)} sampled items")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)
