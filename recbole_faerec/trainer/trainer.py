"""RecBole's :class:`~recbole.trainer.Trainer` with the tail-aware evaluation collector.

FAERec's curriculum (eq. 11) depends on the training epoch; ``import recbole_faerec`` makes every
RecBole trainer, this one included, call ``model.set_epoch(epoch)`` before each training epoch
(:mod:`recbole_faerec.compat` ``trainer_epoch``). The runner adds the last-epoch checkpoint and
resume to it, as to any RecBole trainer (:mod:`recbole_faerec.trainer.resume`). Its evaluation
collector is the :class:`~recbole_faerec.evaluator.TailCollector`, so the tail-aware metrics work
with it.
"""

from recbole.trainer import Trainer

from recbole_faerec.evaluator import install_tail_collector


class FAERecTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        install_tail_collector(self)
