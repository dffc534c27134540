"""The errors of ``motionssl.pipelines``: one base class, :class:`MotionSSLError`.

Every error the package raises for a reason the caller can act on — a video, a dataset, a
config key or option, a folder, a batch, the GPU probe — is a :class:`MotionSSLError`, so
``except MotionSSLError`` catches them all. Each also keeps the built-in class it had
before (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so older ``except``
clauses still work. A leaf module: it imports nothing of the package.
"""
from __future__ import annotations


class MotionSSLError(Exception):
    """Base class of every error ``motionssl.pipelines`` raises; the message says what to do."""


class DataError(MotionSSLError, ValueError):
    """Data that cannot be read as a dataset: no videos, a malformed list, a folder that mixes layouts."""


class UnlabelledError(DataError):
    """Unlabelled videos (label ``-1``) where labels are needed (retrieval, linear probes, fine-tuning)."""


class DataNotFoundError(MotionSSLError, FileNotFoundError):
    """A dataset folder, list file or glob pattern that names nothing."""


class OptionError(MotionSSLError, ValueError):
    """An argument or option of the Python API that cannot be used (named in the message, with the choices)."""


def ours(fn=None, *, value_error: type = OptionError):
    """Decorate a public function: a bare ``ValueError`` or ``FileNotFoundError`` from below leaves as ours.

    The deeper modules check their inputs with the built-in errors; at the public API they
    become ``value_error`` (default :class:`OptionError`) / :class:`DataNotFoundError`
    (subclasses of the same built-ins), message and traceback unchanged.
    """
    import functools

    if fn is None:
        return functools.partial(ours, value_error=value_error)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MotionSSLError:
            raise
        except ValueError as exc:
            if type(exc) is not ValueError:
                raise
            raise value_error(str(exc)).with_traceback(exc.__traceback__) from None
        except FileNotFoundError as exc:
            if type(exc) is not FileNotFoundError:
                raise
            raise DataNotFoundError(str(exc)).with_traceback(exc.__traceback__) from None

    return call
