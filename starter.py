"""Start dunning cases from billing events, on the cluster a worker serves.

    python starter.py event.json     # or - for stdin; `dunning start` takes flags too
    python starter.py                # the demo cases

The library is `intake/`: from Python, `await CaseOpener.from_settings(settings).start(client,
store, BillingEvent(...))`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from activities.store import CaseStore
from config.errors import explain
from config.settings import Settings
from intake.cases import CaseOpener
from intake.client import connect
from intake.demo import run_demo
from intake.events import BillingEvent


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python starter.py [EVENT | -]`: start a case for the event in the JSON
    file (or stdin), or the demo cases when none is given. Exit 3 when the invoice already
    has a case; a bad event, file or connection ends it with one line and exit 1."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = asyncio.run(_start(Settings(), args[0] if args else None))
    except ValidationError as err:
        sys.exit(f"starter: {explain(err)}")
    except (ValueError, OSError, RuntimeError) as err:  # InvalidEvent, PolicyError, connect
        sys.exit(f"starter: {' '.join(str(err).split())}")
    sys.exit(code)


async def _start(settings: Settings, source: str | None) -> int:
    """Check the event and its policy, then open the store and reach Temporal."""
    opener = CaseOpener.from_settings(settings)
    event = case = None
    if source is not None:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text()
        event = BillingEvent.model_validate_json(raw)
        case = opener.case_input(event)
    store = CaseStore(settings.database_url)
    store.upgrade()
    client = await connect(settings)
    if event is None:
        await run_demo(client, settings, store)
        return 0
    result = await opener.start(client, store, event, case=case)
    print(result.message)
    return 0 if result.started else 3


if __name__ == "__main__":
    main()
