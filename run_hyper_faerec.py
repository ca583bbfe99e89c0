"""Tune a model's hyperparameters with RecBole's HyperTuning (hyperopt, the optional extra ``tune``):

``python run_hyper_faerec.py --model=FAERec_SASRec --dataset=ml-100k --params_file=props/hyper/faerec.hyper``

Like RecBole's ``run_hyper.py``: ``--config_files``, ``--params_file``, ``--output_file``, plus
``--algo`` (exhaustive | random | bayes), ``--max_evals``, ``--early_stop``, ``--saved`` and any
RecBole parameter, fixed for every trial, as ``--key=value`` or ``--key value``. See
:mod:`recbole_faerec.quick_start.hyper`.
"""

import sys

from recbole_faerec.quick_start.hyper import main

if __name__ == "__main__":
    sys.exit(main())
