"""Validation errors as one line a person can act on."""

from __future__ import annotations

from pydantic import ValidationError


def explain(err: ValidationError) -> str:
    """``field.path: what is wrong`` for each problem, joined on one line.

    A rule about the whole input (a model validator) names no field and keeps only its words.
    """
    problems = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"])
        what = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)
