from recbole_faerec.trainer.trainer import FAERecTrainer

__all__ = ["FAERecTrainer"]
