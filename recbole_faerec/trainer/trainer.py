"""RecBole's :class:`~recbole.trainer.Trainer`, telling the model which epoch it trains.

FAERec's curriculum (eq. 11) depends on the training epoch; RecBole's ``calculate_loss`` is not
told it. :class:`FAERecTrainer` calls ``model.set_epoch(epoch)`` before each training epoch and
otherwise leaves RecBole's training loop as it is. (``import recbole_faerec`` makes every RecBole
trainer do the same, :mod:`recbole_faerec.compat` ``trainer_epoch``; this one does it even with
that fix switched off.) The runner adds the last-epoch checkpoint and resume to it, as to any
RecBole trainer (:mod:`recbole_faerec.trainer.resume`). Its evaluation collector is the
:class:`~recbole_faerec.evaluator.TailCollector`, so the tail-aware metrics work with it.
"""

from recbole.trainer import Trainer

from recbole_faerec.evaluator import install_tail_collector


class FAERecTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        install_tail_collector(self)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        set_epoch = getattr(self.model, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                    show_progress=show_progress)
