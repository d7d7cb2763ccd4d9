"""Test hooks of the fault suite (tests/e2e/test_faults.py, docs/reliability.md). Inert unless
their environment variable is set; never set them in production.

``OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH=N``: the outbox relay SIGKILLs its own process right after
the broker acknowledged a batch that brings the events it published to N or more, before it deletes
them from the outbox. The restarted relay publishes that batch again: the "relay killed between
publishing and deleting" fault, made deterministic."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

_CRASH_AFTER = int(os.environ.get("OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH", "0") or 0)
_published = 0


def relay_published(events: int) -> None:
    """Called by the relay between the broker's acknowledgement and the delete."""
    global _published
    if _CRASH_AFTER <= 0 or events <= 0:
        return
    _published += events
    if _published >= _CRASH_AFTER:
        log.critical("fault hook OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH=%d: %d events published, killing the process "
                     "before they are deleted from the outbox", _CRASH_AFTER, _published)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
