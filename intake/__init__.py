"""Intake: from a checked billing event to a started dunning case.

The library under the receiver (`webhooks/`), the `dunning` command and the entry scripts:
`client` connects to Temporal, `events` is the billing event every door checks,
`cases` opens a case for it, `demo` starts the demo cases.
"""
