"""The exceptions snep raises on purpose.

Every error that bad input can cause is a :class:`SnepError`, so that the runtime can
count it and carry on instead of crashing. Each subsystem has one type of its own.
"""


class SnepError(Exception):
    """Base class of every error snep raises on purpose."""


class DecodeError(SnepError):
    """Malformed wire input: truncated, bad lengths, bad magic, trailing bytes ...

    The decoder raises only this (or its subclass :class:`AuthError`) and never
    returns anything partial.
    """


class AuthError(DecodeError):
    """A frame whose MAC is missing, unknown (key id) or does not verify."""


class ConfigError(SnepError):
    """Invalid configuration, with the file, key and reason in the message."""


class InvalidTransition(SnepError):
    """A trigger that the state machine's table does not allow in its current state.

    The machine's state is unchanged when this is raised.
    """


class KernelError(SnepError):
    """A conntrack operation the kernel refused (with errno and operation)."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class EventOverrun(KernelError):
    """Kernel events were lost (ENOBUFS): the caller must ``resync`` from a dump."""

    def __init__(self, message: str = "conntrack events lost (ENOBUFS)") -> None:
        super().__init__(message, errno=105)
