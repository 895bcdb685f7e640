"""Exceptions of trugrade. Every one is a TrugradeError and also the builtin it resembles,
so `except ValueError` keeps working for code that does not know trugrade.

The C core reports a status; trugrade._C maps each status to one class here.
"""


class TrugradeError(RuntimeError):
    """Base of every trugrade error."""


class ShapeError(TrugradeError, ValueError):
    """Tensor shapes that do not fit the op."""


class DTypeError(TrugradeError, TypeError):
    """A tensor of an element type the op does not take."""


class TrugradeValueError(TrugradeError, ValueError):
    """An argument with a value out of its range."""


class ConfigError(TrugradeError, ValueError):
    """A configuration that cannot be used; names the file, line and key."""


class DatasetError(TrugradeError, ValueError):
    """A dataset that cannot be used; names the file and the problem."""


class DecodeError(DatasetError):
    """An image file that cannot be decoded; names the file and the reason."""


class TrugradeIOError(TrugradeError, OSError):
    """A file operation the OS refused."""


class OutOfMemoryError(TrugradeError, MemoryError):
    """An allocation failed or a memory limit was reached."""


class UnsupportedError(TrugradeError, NotImplementedError):
    """A valid request that this build of trugrade does not support."""


class RegistryError(TrugradeError, ValueError):
    """A model registry request that cannot be met: an unknown model or version, a weight file
    whose SHA-256 no longer matches (tampered or truncated), a corrupted package."""
