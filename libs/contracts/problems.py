"""The project's one answer to bad input: ``{"field": ..., "problem": ...}``.

Every service refuses a request, a channel order or a command with a list of these, whatever
found the fault (pydantic, a domain rule, the service host); HTTP answers carry them as
``{"detail": [...]}`` (``ProblemAnswer``) and rejection events as ``reasons``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.contracts.storable import problem_text


class Problem(BaseModel):
    """One thing wrong with an input: where (dotted path) and what."""

    model_config = ConfigDict(frozen=True)

    field: str
    problem: str

    def __init__(self, field: str, problem: str) -> None:  # positional too: Problem("qty", "must be > 0")
        super().__init__(field=field, problem=problem)


class ProblemAnswer(BaseModel):
    """What a service answers with 401, 403, 409, 413 or 422: every problem found."""

    detail: list[Problem] = Field(description="every problem found, each naming its field")


def problems_of(exc: ValidationError) -> list[Problem]:
    """Every problem pydantic found, with the field path spelled as a connector author reads it."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append(Problem(field=loc, problem=problem_text(err)))
    return out
