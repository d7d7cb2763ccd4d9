"""Database errors told without the row's values.

PostgreSQL and asyncpg put row values into error texts ("DETAIL: Failing row contains (...)",
"invalid input for query argument $3: 'Jane Doe' ..."), and SQLAlchemy appends the statement's
parameters. Customer names and addresses must never reach logs or dead-letter headers, so:

* ``create_engine`` hides parameters and registers ``scrub`` for every error, which removes the
  values from the driver's exceptions in place (so every later log line and traceback is clean);
* ``describe_error`` names an error by its kind and the field it concerns (SQLSTATE, table,
  column, constraint, query argument), never by the values.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import StatementError

_ARGUMENT = re.compile(r"(invalid input for query argument \$\d+)")
_QUOTED_VALUE = re.compile(r':\s*"[^"]*"\s*$')
_CODEC_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)
_FIELDS = ("schema_name", "table_name", "column_name", "constraint_name", "data_type_name")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver error it wraps and their explicit causes (each once)."""
    seen: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and not any(item is s for s in seen):
        seen.append(item)
        item = getattr(item, "orig", None) or item.__cause__
    return seen


def _safe_message(message: str) -> str:
    first = message.split("\n", 1)[0]  # the lines below (DETAIL, HINT) show the row
    argument = _ARGUMENT.search(first)
    if argument:
        return first[: argument.end()]  # the rest repeats the value
    return _QUOTED_VALUE.sub(": (value hidden)", first)


def scrub(exc: BaseException) -> None:
    """Remove row values from a database error and the driver errors it wraps, in place."""
    for item in _chain(exc):
        if isinstance(getattr(item, "detail", None), str):
            item.detail = None  # type: ignore[attr-defined]  # "Failing row contains (...)"
        if isinstance(item, _CODEC_ERRORS):
            # The driver could not encode a parameter; its codec's text quotes the value.
            item.args = (f"{type(item).__name__} while encoding a query argument (text hidden)",)
        elif item.args and isinstance(item.args[0], str):
            item.args = (_safe_message(item.args[0]), *item.args[1:])


def scrub_on_error(context: ExceptionContext) -> None:
    """SQLAlchemy ``handle_error`` hook (see ``create_engine``)."""
    scrub(context.original_exception)
    if context.sqlalchemy_exception is not None:
        scrub(context.sqlalchemy_exception)


def describe_error(exc: BaseException) -> str:
    """The error's kind and the field it concerns, without values, e.g.
    ``IntegrityError (CheckViolationError, SQLSTATE 23514): table order_lines, constraint
    order_lines_check``. Errors that are not the database's keep their own message."""
    chain = _chain(exc)
    drivers = [e for e in chain if getattr(e, "sqlstate", None)]
    # asyncpg's own exception knows the table, column and constraint; the adapter's does not.
    driver = max(drivers, key=lambda e: sum(bool(getattr(e, n, None)) for n in _FIELDS), default=None)
    inner = [e for e in chain if not isinstance(e, StatementError)]
    if driver is None and len(inner) == len(chain):
        return f"{type(exc).__name__}: {exc}"
    kind = type(exc).__name__
    if driver is not None:
        kind += f" ({type(driver).__name__}, SQLSTATE {driver.sqlstate})"  # type: ignore[attr-defined]
    fields = [f"{name.removesuffix('_name')} {getattr(driver, name)}" for name in _FIELDS
              if getattr(driver, name, None)]
    for item in chain:
        found = _ARGUMENT.search(item.args[0]) if item.args and isinstance(item.args[0], str) else None
        if found:
            fields.append(found.group(1).removeprefix("invalid input for "))
            break
    if not fields and inner:
        last = inner[-1]
        fields.append(_safe_message(str(last.args[0])) if last.args else type(last).__name__)
    return kind + (": " + ", ".join(fields) if fields else "")
