"""The package's exception and warning types, in one place.

The library raises these; the command line (`hf_mlcls.cli`) imports them and turns a
:class:`UserError` (and the standard errors a user can cause: ``FileNotFoundError``,
``ValueError``, ``PermissionError``) into one line on stderr and exit status 2. Nothing in
the library imports the CLI.

The modules that raise them re-export them under their old names
(``hf_mlcls.cli.UserError``, ``hf_mlcls.inference.ModelLoadError``,
``hf_mlcls.convert.ConversionError``, ``hf_mlcls.data.DatasetLayoutError`` ...), so either
import works and names the same class.
"""

from __future__ import annotations

__all__ = [
    "ConversionError",
    "DatasetLayoutError",
    "ImageOpenError",
    "InvalidImageError",
    "MissingDatasetFileError",
    "ModelLoadError",
    "SkippedImagesWarning",
    "UserError",
]


class UserError(Exception):
    """An error the user can fix; the CLI prints it without a traceback."""


class ModelLoadError(UserError, OSError):
    """A model folder or Hub id that cannot be loaded; the message names it and says why."""


class ConversionError(UserError):
    """A checkpoint that cannot be converted as asked; the message names the file, keys or arguments."""


class DatasetLayoutError(ValueError):
    """The files on disk do not match the layout the loader expects, or hold bad data."""


class MissingDatasetFileError(DatasetLayoutError, FileNotFoundError):
    """An annotation file or folder the layout needs is not there (names the path)."""


class InvalidImageError(DatasetLayoutError):
    """Raised with ``strict=True`` when an image is missing, empty, truncated or corrupt."""


class ImageOpenError(OSError):
    """An image could not be read; the message names the file."""


class SkippedImagesWarning(UserWarning):
    """Some images were left out of a split; the count is in the split's load report."""
