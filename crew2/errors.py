"""The one exception type that means "the user asked for something that cannot be done"."""


class Crew2Error(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
