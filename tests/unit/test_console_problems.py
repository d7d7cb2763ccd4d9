"""The console puts each of a service's problems beside the form field it names."""

from __future__ import annotations

from services.console.client import Problem
from services.console.web import place_problems


def test_a_problem_lands_beside_the_field_it_names_in_the_services_own_words() -> None:
    placed = place_problems(
        [Problem("reference", "GRN-1 was already booked"), Problem("lines.0.qty", "Input should be greater than 0"),
         Problem("rank_by.0", "unknown ranking 'bogus'"), Problem("order", "nothing is allocated to pack")],
        ["reference", "qty", "rank_by"],
    )
    assert placed == {
        "reference": ["reference: GRN-1 was already booked"],
        "qty": ["lines.0.qty: Input should be greater than 0"],
        "rank_by": ["rank_by.0: unknown ranking 'bogus'"],
        "_form": ["order: nothing is allocated to pack"],
    }


def test_an_alias_maps_a_service_field_to_the_forms_input() -> None:
    placed = place_problems([Problem("serials.1", "2 serials for 3 units")], ["serials_1"], {"serials.1": "serials_1"})
    assert placed == {"serials_1": ["serials.1: 2 serials for 3 units"]}
