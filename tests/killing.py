"""A kill in the middle of training, for the tests of resumable runs."""

from __future__ import annotations


class Killed(Exception):
    """What :func:`kill_at_step`'s callback raises: the run stops there, as a killed process would."""


def kill_at_step(step: int):
    """A transformers ``TrainerCallback`` that raises :class:`Killed` once the trainer finishes ``step``."""
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise Killed

    return KillAtStep()
