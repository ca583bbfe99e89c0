"""recbole-faerec: FAERec (SIGIR 2026) and its baselines as a RecBole 1.2.1 plugin.

Importing the package applies every change the plugin makes to RecBole, in one registry
(:mod:`recbole_faerec.compat`): RecBole 1.2.1 on today's numpy/pandas/torch, the tail-aware metrics
in its evaluator (:mod:`recbole_faerec.evaluator`), ``eval_exclude_history``
(:mod:`recbole_faerec.evaluator.history`), the paper's BCE loss and all-position training for its
sequential models.
"""

from recbole_faerec import compat as _compat

_compat.apply()

__version__ = "0.1.0"
