"""The benchmark (SPEC section 7; docs/benchmark.md): a tool run beside the product, never
imported by it and not shipped in its wheel. ``python -m bench SCENARIO`` or ``oms bench SCENARIO``
from a source checkout.

* ``scenarios``: one class per scenario (phases, stock, own checks, what follows the load);
* ``run``: one run: relay ceiling, seeding, phases, correctness checks, the result;
* ``workload``, ``loadgen``: deterministic orders and the load-generator process;
* ``relay``: the bare two-hop relay that measures the transport ceiling;
* ``measure``, ``report``: statistics, process meters, JSON/Markdown/PNG and HISTORY.md.
"""
