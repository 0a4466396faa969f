"""``train.py`` that stops at a chosen moment and waits there to be killed (tests only).

    DPL_PAUSE_AT=checkpoint:E   right after epoch E's checkpoint is committed
    DPL_PAUSE_AT=step:N         before the N-th training step of this process
    DPL_PAUSE_AT=final-test     when the final test starts (after Dassl printed 'Finish training')
    DPL_PAUSE_AT=result         right before result.json is written (the test is done)
    DPL_PAUSE_FLAG=<file>       created when the process has stopped there

The process then sleeps until the test kills it with SIGKILL, so the kill lands exactly at that
moment instead of wherever a timer would.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from trainers.dpl import DPL  # noqa: E402
from trainers.dpl_common import DPLTrainerBase  # noqa: E402
from trainers.dpl_search import DPLSearch  # noqa: E402


def wait_to_be_killed() -> None:
    sys.stdout.flush()
    Path(os.environ["DPL_PAUSE_FLAG"]).touch()
    time.sleep(3600)


def pause_after_checkpoint(epoch: int) -> None:
    save_model = DPLTrainerBase.save_model

    def save_then_pause(self, saved_epoch, directory, is_best=False, val_result=None, model_name=""):
        save_model(self, saved_epoch, directory, is_best, val_result, model_name)
        if not model_name and saved_epoch + 1 == epoch:
            wait_to_be_killed()

    DPLTrainerBase.save_model = save_then_pause


def pause_before_step(step: int) -> None:
    steps = 0
    for trainer in (DPL, DPLSearch):
        forward_backward = trainer.forward_backward

        def count_then_pause(self, batch, forward_backward=forward_backward):
            nonlocal steps
            steps += 1
            if steps == step:
                wait_to_be_killed()
            return forward_backward(self, batch)

        trainer.forward_backward = count_then_pause


def pause_in_final_test() -> None:
    test = DPLTrainerBase.test

    def pause_then_test(self, split=None):
        if split is None:
            wait_to_be_killed()
        return test(self, split)

    DPLTrainerBase.test = pause_then_test


def pause_before_result() -> None:
    write_result = DPLTrainerBase.write_result

    def pause_then_write(self, accuracy, **extra):
        wait_to_be_killed()
        write_result(self, accuracy, **extra)

    DPLTrainerBase.write_result = pause_then_write


if __name__ == "__main__":
    where, _, value = os.environ["DPL_PAUSE_AT"].partition(":")
    {"checkpoint": lambda: pause_after_checkpoint(int(value)), "step": lambda: pause_before_step(int(value)),
     "final-test": pause_in_final_test, "result": pause_before_result}[where]()  # fmt: skip
    train.main(sys.argv[1:])
