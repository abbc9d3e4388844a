"""Keeping Python's cyclic garbage collector out of the site build's way.

Loading one dataset of 1,000 results allocates about a million container objects (pydantic models,
their lists and dicts) that live until the dataset is rendered. The cyclic collector traverses the
growing heap again at every threshold, which made loading four times slower than parsing alone
(measured: 0.92 s vs 0.22 s for 1,000 OrganMNIST results). None of these objects form reference
cycles, so reference counting frees them all: the collector is paused while parsing, and what was
parsed is frozen (left out of later collections) while the pages are rendered. Rendering itself
runs with the collector on, so the build's own short-lived cycles (Jinja contexts) are still freed.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def parsing():
    """Pause the cyclic collector; the objects made meanwhile are frozen when the block ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # what was parsed stays out of the collections made while rendering
        if enabled:
            gc.enable()


@contextmanager
def build():
    """The whole build: on the way out, frozen objects return to the collector (freed by it or kept)."""
    frozen_before = gc.get_freeze_count()
    try:
        yield
    finally:
        if not frozen_before:  # (objects someone else froze stay frozen)
            gc.unfreeze()
