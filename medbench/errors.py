"""Exceptions raised by medbench. Every message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class MedbenchError(Exception):
    """Base class of all medbench errors. ``exit_code``: the command line's exit status for it."""

    exit_code = 1


class SettingError(MedbenchError, ValueError):
    """A bad ``--set KEY=VALUE`` (protocol value or study option): a usage error, exit status 2."""

    exit_code = 2


class UnknownDatasetError(MedbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataFileMissingError(MedbenchError, FileNotFoundError):
    pass


class ChecksumMismatchError(MedbenchError):
    pass


class UnsupportedSizeError(MedbenchError, ValueError):
    pass


class InvalidModelError(MedbenchError, ValueError):
    """A model breaks the input/output contract or an admission rule."""
