from recbole_faerec.quick_start.quick_start import build_config, load_dataset, run, run_recbole_faerec
from recbole_faerec.quick_start.reload import load_data_and_model

__all__ = ["build_config", "load_data_and_model", "load_dataset", "run", "run_recbole_faerec"]
