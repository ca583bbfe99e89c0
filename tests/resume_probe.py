"""A run that is killed (SIGKILL, by itself) right after it wrote a given epoch's last-epoch
checkpoint; for tests/test_resume.py and tests/test_compare_resume.py.

Usage, in the run's folder:
  python tests/resume_probe.py MODEL KILL_AFTER_EPOCH JSON_CONFIG_DICT
  python tests/resume_probe.py --cli KILL_AFTER_EPOCH NTH ARG...  (the command line's runner with
      ARG...: killed after the NTH run, counted from 1, that writes epoch KILL_AFTER_EPOCH)
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


def kill_after(epoch, nth=1):
    """Make the ``nth`` write of ``epoch``'s last-epoch checkpoint the process's last act."""
    write, seen = ResumableTrainerMixin._write_last_checkpoint, []

    def write_then_die(self, at, stopped=False):
        write(self, at, stopped)
        if at == epoch:
            seen.append(at)
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    ResumableTrainerMixin._write_last_checkpoint = write_then_die


def main(model, epoch, config_json):
    kill_after(int(epoch))
    run_recbole_faerec(model, "ml-100k", config_dict=json.loads(config_json))
    print("NOT KILLED")


def main_cli(epoch, nth, *args):
    from recbole_faerec.quick_start.cli import main as cli_main

    kill_after(int(epoch), int(nth))
    cli_main(list(args))
    print("NOT KILLED")


if __name__ == "__main__":
    if sys.argv[1] == "--cli":
        main_cli(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
