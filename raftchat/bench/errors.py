"""The benchmark's error: what stopped a scenario, in words a user can act on."""


class BenchError(Exception):
    """A scenario could not complete (a node died, a wait timed out); the text says what."""
