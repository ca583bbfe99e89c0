from recbole_faerec.utils.utils import ModelNotFoundError, get_model, get_trainer

__all__ = ["ModelNotFoundError", "get_model", "get_trainer"]
