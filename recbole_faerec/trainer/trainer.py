"""The trainer of the LLM-item methods (``FAERec_<Backbone>``, ...): RecBole's own
:class:`~recbole.trainer.Trainer`.

Nothing in it is specific: ``import recbole_faerec`` makes every RecBole trainer, this one included,
call ``model.set_epoch(epoch)`` before each training epoch (FAERec's curriculum, eq. 11) and collect
what the tail-aware metrics need (:mod:`recbole_faerec.compat`, ``trainer_epoch`` and
``tail_metrics``). The runner adds the last-epoch checkpoint and resume to it, as to any RecBole
trainer (:mod:`recbole_faerec.trainer.resume`). It is its own class so a method can say which
trainer it wants (``trainer_class``) and a later one can grow without touching RecBole's.
"""

from recbole.trainer import Trainer


class LLMItemTrainer(Trainer):
    """RecBole's :class:`~recbole.trainer.Trainer` (see the module docstring)."""


#: the name it had when FAERec was the only method (``FAERec_<Backbone>`` models)
FAERecTrainer = LLMItemTrainer
