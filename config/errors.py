"""Errors as one line a person can act on: validation problems with their field paths, and
any exception's text without its line breaks."""

from __future__ import annotations

from collections.abc import Collection

from pydantic import ValidationError


def one_line(err: object, limit: int = 300) -> str:
    """`err`'s text on one line, at most `limit` characters; its type's name when it says
    nothing."""
    return " ".join(str(err).split())[:limit] or type(err).__name__


def explain(err: ValidationError, prefix: str = "", tags: Collection[str] = ()) -> str:
    """``field.path: what is wrong`` for each problem, joined on one line.

    `prefix` goes before every path (``data.object``); `tags` are the names of a tagged
    union's members, which pydantic puts in the path and a reader does not need. A rule
    about the whole input (a model validator) names no field and keeps only its words;
    malformed JSON says so.
    """
    problems = []
    for problem in err.errors(include_url=False):
        loc = [str(part) for part in problem["loc"]]
        if loc and loc[0] in tags:
            loc = loc[1:]
        if problem["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = [problem["ctx"].get("discriminator", "type").strip("'")]
        what = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "json_invalid":
            loc, what = [], f"malformed JSON ({problem['ctx'].get('error', 'invalid')})"
        where = ".".join(([prefix] if prefix else []) + loc)
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)
