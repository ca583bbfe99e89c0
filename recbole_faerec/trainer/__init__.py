from recbole_faerec.trainer.resume import (ResumableTrainerMixin, ResumeError, last_checkpoint_path,
                                           resumable, resume_file, supports_resume)
from recbole_faerec.trainer.trainer import FAERecTrainer, LLMItemTrainer

__all__ = ["FAERecTrainer", "LLMItemTrainer", "ResumableTrainerMixin", "ResumeError",
           "last_checkpoint_path", "resumable", "resume_file", "supports_resume"]
