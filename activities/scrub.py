"""Contact details out of text that may reach a workflow history or a log line.

Providers quote the address or number they refused, and SQL errors quote their parameters;
such text passes through `scrubbed` before it is stored or logged.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Seven or more digits, maybe with separators: any phone number, however it is written.
_PHONE = re.compile(r"(?<!\w)\+?\d[\d ().-]{5,}\d(?!\w)")


def scrubbed(text: str, recipient: str = "", limit: int | None = 300) -> str:
    """`text` on one line (at most `limit` characters), without `recipient` and without any
    email address or phone number."""
    text = " ".join(text.split())
    for contact in filter(None, dict.fromkeys([recipient, recipient.removeprefix("+")])):
        text = re.sub(re.escape(contact), "<recipient>", text, flags=re.IGNORECASE)
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))[:limit]
