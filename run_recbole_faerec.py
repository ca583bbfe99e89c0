"""Train and evaluate a model: ``python run_recbole_faerec.py --model=SASRec --dataset=ml-100k``.

Like RecBole's ``run_recbole.py``: ``--config_files`` (space-separated YAML files) and any RecBole
parameter as ``--key=value`` or ``--key value``; ``--resume`` continues an interrupted run. Plugin models (``FAERec_SASRec``, ...) are found first, then
RecBole's own.
"""

import sys

from recbole_faerec.quick_start.cli import main

if __name__ == "__main__":
    sys.exit(main())
