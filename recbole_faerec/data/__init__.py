from recbole_faerec.data.atomic import AtomicFileError, DatasetNotFoundError, check_atomic_files

__all__ = ["AtomicFileError", "DatasetNotFoundError", "check_atomic_files"]
