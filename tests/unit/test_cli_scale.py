"""``oms up --scale SERVICE=COUNT`` (issue 12 item 5): what the option accepts."""

from __future__ import annotations

import pytest

from services.cli.main import _scale_arguments


def test_scale_takes_service_equals_count_for_any_service_repeatedly() -> None:
    assert _scale_arguments(["allocation=3", "order-intake=2", "fulfillment=1"]) == {
        "allocation": 3, "order_intake": 2, "fulfillment": 1}
    assert _scale_arguments([]) == {}


@pytest.mark.parametrize("bad", ["allocation", "allocation=0", "allocation=x", "console=2", "nope=2", "=3"])
def test_scale_refuses_what_it_cannot_run(bad: str) -> None:
    with pytest.raises(SystemExit, match="SERVICE=COUNT"):
        _scale_arguments([bad])
