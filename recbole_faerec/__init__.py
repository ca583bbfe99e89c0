"""recbole-faerec: FAERec (SIGIR 2026) and its baselines as a RecBole 1.2.1 plugin.

Importing the package makes RecBole 1.2.1 run on today's numpy/pandas/torch
(see :mod:`recbole_faerec.compat`), registers the tail-aware metrics in RecBole's evaluator
(see :mod:`recbole_faerec.evaluator`) and teaches it ``eval_exclude_history``
(:mod:`recbole_faerec.evaluator.history`).
"""

from recbole_faerec import compat as _compat

_compat.apply()

from recbole_faerec.evaluator.history import install_history_exclusion as _history  # noqa: E402
from recbole_faerec.evaluator.metrics import register_metrics as _register_metrics  # noqa: E402

_register_metrics()
_history()

__version__ = "0.1.0"
