from recbole_faerec.quick_start.quick_start import build_config, load_dataset, run, run_recbole_faerec

__all__ = ["build_config", "load_dataset", "run", "run_recbole_faerec"]
