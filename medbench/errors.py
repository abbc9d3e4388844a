"""Exceptions raised by medbench. Every message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class MedbenchError(Exception):
    """Base class of all medbench errors."""


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
