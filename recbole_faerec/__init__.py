"""recbole-faerec: FAERec (SIGIR 2026) and its baselines as a RecBole 1.2.1 plugin.

Importing the package makes RecBole 1.2.1 run on today's numpy/pandas/torch
(see :mod:`recbole_faerec.compat`).
"""

from recbole_faerec import compat as _compat

_compat.apply()

__version__ = "0.1.0"
