"""The errors faultlines raises on bad input.

Every message names what is wrong and what to do about it. The CLI prints the message on
one line of stderr and exits with code 2; the Python API lets the exception propagate.
"""

from typing import NoReturn

#: What every command prints when Ctrl-C stops it (exit code 130): runs and files are written
#: whole or not at all, so whatever was there before is as it was, or the new one is complete.
INTERRUPTED = "interrupted: stopped before finishing; nothing was left half-written\n"


def exit_interrupted() -> NoReturn:
    """Print `INTERRUPTED` and end the process with exit code 130, now, its output flushed. Not by
    SystemExit: once a KeyboardInterrupt has passed through code Python runs for a C extension,
    Python ends itself by SIGINT at exit (status -2, and a shell's 130 with no line), whatever
    the exit code asked."""
    import os
    import sys

    sys.stderr.write(INTERRUPTED)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def first_line(error: BaseException) -> str:
    """The first line of another library's error message (at most 200 characters), or its type's
    name when it has none: what a one-line message quotes of it."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class FaultlinesError(Exception):
    """Base class: a problem with what the caller gave faultlines, not a bug in it."""


class DataError(FaultlinesError, ValueError):
    """The data is missing, empty, mis-shaped, non-finite or mislabelled."""


class ModelError(FaultlinesError, ValueError):
    """The model file cannot be loaded safely, or the model does not fit the data."""


class LayerNotFoundError(ModelError, KeyError):
    """The named embedding layer does not exist in the model."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class SettingsError(FaultlinesError, ValueError):
    """A finder or command was given a setting outside its valid range."""


class NotFittedError(FaultlinesError, ValueError, AttributeError):
    """A detector or model was used before `fit` (as scikit-learn's NotFittedError)."""


class RunDirError(FaultlinesError, OSError):
    """A run directory cannot be written or read back."""


class InstallError(FaultlinesError):
    """faultlines itself is installed incompletely: a file that ships with the package (a report
    template) is missing. Not the caller's input: reinstalling faultlines mends it."""


class InputWarning(UserWarning):
    """The data may not be what the model expects (inputs scaled differently from training, say);
    the run goes on. The CLI prints it as one line: "warning: ..."."""
