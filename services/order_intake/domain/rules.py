"""Channel rules: conditions on an incoming order and what to do with it, evaluated at intake.

Evaluation order (documented in docs/contract.md, "Channel rules"):

1. Enabled rules in ascending ``position`` (ties: ascending ``rule_id``).
2. A rule matches when every condition it sets holds (an unset condition matches anything;
   a list condition matches when the order has ANY of its values).
3. Every matching rule contributes its actions, in that order:
   - ``hold``: the order is held for review (nothing is announced to allocation until staff
     release it); any matching rule can hold.
   - ``priority``: the FIRST matching rule that sets a priority decides it (a rule placed
     earlier is the stronger one); later ones are recorded as overridden.
   - ``ship_complete``: forces ship-complete on (an order that asked for it keeps it).
   - ``tags``: added to the order's tags (union, in order of first appearance).
   - ``restrict_locations``: allocation may take stock only from these locations; several
     matching rules narrow it further (the intersection: every one of them holds).
   - ``prefer_locations``: these locations rank before all others, in the given order; the
     FIRST matching rule that sets it decides (as for priority).
   - ``location_priorities``: a location's priority for this order instead of its own (the
     channel's own ranking); per location, the FIRST matching rule that sets it decides.
4. A matching rule with ``stop`` ends the evaluation: rules after it are not looked at.

Pure: no I/O; the service layer loads the rules and stores what they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated

import pycountry
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from libs.contracts.events import LocationChoice
from libs.contracts.orders import MAX_PRIORITY, MIN_PRIORITY, ChannelOrder, Tag
from libs.contracts.storable import Text

Name = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Country = Annotated[Text, StringConstraints(min_length=2, max_length=2, to_upper=True)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
LocationPriority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True)]


class RuleConditions(BaseModel):
    """What an order must look like for the rule to apply. Each field is one operator; unknown
    fields (operators) are refused."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Name] | None = Field(default=None, min_length=1, description="the order's channel is one of these")
    countries: list[Country] | None = Field(default=None, min_length=1, description="ship-to country is one of these")
    currency: Annotated[Text, StringConstraints(min_length=3, max_length=3, to_upper=True)] | None = Field(
        default=None, description="the order's currency; required with total_at_least / total_below")
    total_at_least: Money | None = Field(default=None, description="sum of qty x unit_price >= this")
    total_below: Money | None = Field(default=None, description="sum of qty x unit_price < this")
    skus: list[Name] | None = Field(default=None, min_length=1, description="the order has a line of one of these SKUs")
    customer_tags: list[Tag] | None = Field(default=None, min_length=1, description="the customer has one of these tags")

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, values: list[str] | None) -> list[str] | None:
        for value in values or []:
            if pycountry.countries.get(alpha_2=value) is None:
                raise ValueError(f"unknown ISO 3166 country code {value!r}")
        return values

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is not None and pycountry.currencies.get(alpha_3=value) is None:
            raise ValueError(f"unknown ISO 4217 currency code {value!r}")
        return value

    @model_validator(mode="after")
    def _totals_need_a_currency(self) -> RuleConditions:
        if (self.total_at_least is not None or self.total_below is not None) and self.currency is None:
            raise ValueError("currency: required with total_at_least or total_below (totals are compared in one currency)")
        return self


class RuleActions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hold: bool = Field(default=False, description="hold the order for review: nothing is allocated until released")
    priority: int | None = Field(default=None, ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True)
    ship_complete: bool = Field(default=False, description="force ship-complete")
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    restrict_locations: list[Name] | None = Field(
        default=None, min_length=1, max_length=100, description="allocate only from these locations (known ids)")
    prefer_locations: list[Name] = Field(
        default_factory=list, max_length=100, description="rank these locations first, in this order")
    location_priorities: dict[Name, LocationPriority] = Field(
        default_factory=dict, max_length=100,
        description="location id -> priority for matching orders (higher first), instead of the location's own")

    @model_validator(mode="after")
    def _does_something(self) -> RuleActions:
        if not (self.hold or self.priority is not None or self.ship_complete or self.tags or self.names_locations):
            raise ValueError("a rule must do something: hold, priority, ship_complete, tags or locations")
        return self

    @property
    def names_locations(self) -> bool:
        return bool(self.restrict_locations or self.prefer_locations or self.location_priorities)

    def location_fields(self) -> list[tuple[str, str]]:
        """(field, location id) of every location the actions name, for checking they exist."""
        return ([(f"actions.restrict_locations.{i}", lid) for i, lid in enumerate(self.restrict_locations or [])]
                + [(f"actions.prefer_locations.{i}", lid) for i, lid in enumerate(self.prefer_locations)]
                + [(f"actions.location_priorities.{lid}", lid) for lid in self.location_priorities])


class RuleIn(BaseModel):
    """A rule as staff write it (``POST /v1/rules``, ``PUT /v1/rules/{rule_id}``)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    position: int = Field(default=100, ge=0, le=1_000_000, strict=True, description="lower runs first")
    enabled: bool = True
    stop: bool = Field(default=False, description="when this rule matches, later rules are not evaluated")
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    actions: RuleActions


@dataclass(frozen=True)
class Rule:
    rule_id: str
    spec: RuleIn


@dataclass
class RuleEffect:
    """What one rule did to one order, in words staff read."""

    rule_id: str
    name: str
    did: list[str]


@dataclass
class Decision:
    """The outcome of every rule for one order."""

    hold: bool = False
    priority: int | None = None
    ship_complete: bool = False
    tags: list[str] = field(default_factory=list)
    effects: list[RuleEffect] = field(default_factory=list)
    locations: LocationChoice | None = None  # where allocation may / should take stock from

    @property
    def changes_anything(self) -> bool:
        return bool(self.effects)


def order_total(order: ChannelOrder) -> Decimal:
    return sum((ln.unit_price * ln.qty for ln in order.lines), Decimal(0))


def matches(conditions: RuleConditions, order: ChannelOrder) -> bool:
    c = conditions
    if c.channels is not None and order.channel not in c.channels:
        return False
    if c.countries is not None and order.ship_to.country not in c.countries:
        return False
    if c.currency is not None and order.currency != c.currency:
        return False
    if c.total_at_least is not None or c.total_below is not None:
        total = order_total(order)
        if c.total_at_least is not None and total < c.total_at_least:
            return False
        if c.total_below is not None and total >= c.total_below:
            return False
    if c.skus is not None and not {ln.sku for ln in order.lines} & set(c.skus):
        return False
    return c.customer_tags is None or bool(set(order.customer.tags or ()) & set(c.customer_tags))


def evaluate(rules: list[Rule], order: ChannelOrder) -> Decision:
    """Apply ``rules`` to ``order`` in the documented order."""
    decision = Decision()
    for rule in sorted(rules, key=lambda r: (r.spec.position, r.rule_id)):
        spec = rule.spec
        if not spec.enabled or not matches(spec.conditions, order):
            continue
        did = []
        if spec.actions.hold:
            decision.hold = True
            did.append("held for review")
        if spec.actions.priority is not None:
            if decision.priority is None:
                decision.priority = spec.actions.priority
                did.append(f"priority {order.priority} -> {spec.actions.priority}")
            else:
                did.append(f"priority {spec.actions.priority} overridden by an earlier rule")
        if spec.actions.ship_complete and not order.ship_complete:
            decision.ship_complete = True
            did.append("ship complete")
        new_tags = [t for t in spec.actions.tags if t not in decision.tags]
        if new_tags:
            decision.tags += new_tags
            did.append("tagged " + ", ".join(new_tags))
        if spec.actions.names_locations:
            decision.locations, said = choose_locations(decision.locations, spec.actions, f"rule {spec.name!r} ({rule.rule_id})")
            did += said
        decision.effects.append(RuleEffect(rule.rule_id, spec.name, did or ["matched (nothing left to change)"]))
        if spec.stop:
            break
    return decision


def choose_locations(
    before: LocationChoice | None, actions: RuleActions, label: str
) -> tuple[LocationChoice, list[str]]:
    """Add one matching rule's location actions to what earlier rules chose (see the module's
    evaluation order); returns the new choice and what the rule did, in words."""
    choice = before or LocationChoice()
    update: dict[str, object] = {}
    did: list[str] = []
    if actions.restrict_locations:
        if choice.restrict_to is None:
            allowed = list(dict.fromkeys(actions.restrict_locations))
        else:
            allowed = [lid for lid in choice.restrict_to if lid in actions.restrict_locations]
        update |= {"restrict_to": allowed, "restricted_by": _joined(choice.restricted_by, label)}
        did.append("restricted to locations " + (", ".join(allowed) or "(none left: nothing can be allocated)"))
    if actions.prefer_locations:
        if choice.prefer:
            did.append("preferred locations overridden by an earlier rule")
        else:
            update |= {"prefer": list(dict.fromkeys(actions.prefer_locations)), "preferred_by": label}
            did.append("prefers locations " + ", ".join(dict.fromkeys(actions.prefer_locations)))
    new = {lid: p for lid, p in actions.location_priorities.items() if lid not in choice.priorities}
    if new:
        update |= {"priorities": {**choice.priorities, **new}, "priorities_by": _joined(choice.priorities_by, label)}
        did.append("location priorities " + ", ".join(f"{lid} {p}" for lid, p in new.items()))
    if len(new) < len(actions.location_priorities):
        did.append("location priorities of " + ", ".join(lid for lid in actions.location_priorities if lid not in new)
                   + " overridden by an earlier rule")
    return choice.model_copy(update=update), did


def _joined(before: str, label: str) -> str:
    return f"{before}; {label}" if before else label
