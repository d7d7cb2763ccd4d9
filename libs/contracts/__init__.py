"""Public contract of the OMS: topics, the event envelope and every event payload.

This package is the only code the four services share about each other. Changing a model here
changes the wire format: add optional fields, never rename or remove (see docs/contract.md).
"""

from libs.contracts.envelope import Envelope, EventDecodeError, decode_event, encode_event, new_envelope
from libs.contracts.topics import ALL_TOPICS, Topic, dlq

__all__ = [
    "ALL_TOPICS",
    "Envelope",
    "EventDecodeError",
    "Topic",
    "decode_event",
    "dlq",
    "encode_event",
    "new_envelope",
]
