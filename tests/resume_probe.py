"""A run that is killed (SIGKILL, by itself) right after it wrote a given epoch's last-epoch
checkpoint; for tests/test_resume.py.

Usage: python tests/resume_probe.py MODEL KILL_AFTER_EPOCH JSON_CONFIG_DICT (in the run's folder).
The kill comes at a fixed point, so the test does not race the training; nothing after it runs
(no ``finally``, no flushing), as with a machine that goes away.
"""

import json
import os
import signal
import sys

import recbole_faerec  # noqa: F401  (compat fixes, metrics)
from recbole_faerec.quick_start import run_recbole_faerec
from recbole_faerec.trainer.resume import ResumableTrainerMixin


def main(model, kill_after, config_json):
    kill_after = int(kill_after)
    write = ResumableTrainerMixin._write_last_checkpoint

    def write_then_die(self, epoch, stopped=False):
        write(self, epoch, stopped)
        if epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    ResumableTrainerMixin._write_last_checkpoint = write_then_die
    run_recbole_faerec(model, "ml-100k", config_dict=json.loads(config_json))
    print("NOT KILLED")


if __name__ == "__main__":
    main(*sys.argv[1:])
