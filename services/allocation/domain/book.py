"""The allocation book: the orders and stock of a transaction's slice, and every command on them.

A transaction loads a slice (the SKUs it touches, their positions, the open queue of SKUs whose
availability can rise, the orders involved), builds an ``AllocationBook`` from it, applies the
batch's commands in order and writes back what changed. No I/O happens here: when a command
needs something outside the slice, the book raises ``SliceTooSmall`` naming it, and the caller
loads more and replays the batch on a fresh book.

Fairness rule: every change that can raise a SKU's availability (stock in, release, hold
released, location (re)activated, policy change) owes the SKU a fill (``FairQueue.owe``); the
fill runs before anything else may take stock of that SKU, and at the end of the batch. So stock
a newer order can see is stock no older eligible backorder can take.

Where each rule lives, one part at a time:
- ``model``: locations, positions, orders, lines, allocations; the fair-queue order (``queue_key``);
- ``availability``: available-to-promise (free units, safety stock, channel buffer);
- ``planner``: eligible locations, ranking, fewest-splits combinations, the cap, lot picks;
- ``queue``: the fair queue's loaded slices and the SKUs owed a fill;
- ``aggregate``: the order/line aggregate and the operations commands are made of, among them
  the one release-to-backorder;
- ``order_commands``, ``stock_commands``, ``hand_commands``: the commands, by where they come from;
- ``changes``: what changed, for the writer, and the results to publish (typed snapshots).
"""

from __future__ import annotations

from services.allocation.domain.aggregate import CommandRefused, Problem, UnknownOrder
from services.allocation.domain.changes import OrderResult
from services.allocation.domain.dropship_commands import DropshipCommands
from services.allocation.domain.hand_commands import HandCommands
from services.allocation.domain.model import PositionKey
from services.allocation.domain.order_commands import OrderCommands
from services.allocation.domain.order_holds import OrderHolds
from services.allocation.domain.queue import QueueSlice, SliceTooSmall
from services.allocation.domain.stock_commands import StockCommands

__all__ = [
    "AllocationBook", "CommandRefused", "OrderResult", "PositionKey", "Problem", "QueueSlice", "SliceTooSmall",
    "UnknownOrder",
]


class AllocationBook(OrderCommands, StockCommands, HandCommands, OrderHolds, DropshipCommands):
    """An in-memory slice of SKUs and orders with every allocation command; records what changed
    (``changes``). Built as ``BookCore`` (``aggregate``) plus one class per group of commands."""
