"""Errors a user can act on. Their message names the file (or setting) and the problem."""


class UserError(ValueError):
    """Bad input from the user: the CLI prints the message and exits with status 2."""


class GenerationCancelled(Exception):
    """Raised inside the sampler when the user cancels; finished segments are kept by the caller."""
