"""Errors the pipeline raises for bad input: their message is safe and meant for the user."""


class InputError(Exception):
    """The input can't be separated (not audio, corrupt, too long, a playlist, ...).

    `str(error)` is one friendly sentence that front ends show as is.
    """


class ModelError(Exception):
    """A model could not be found, downloaded or loaded (an operator problem, not the user's)."""
