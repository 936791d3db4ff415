"""The custom search attributes operators filter cases on in the Temporal UI and `dunning list`.

They must be registered on the server before the first case starts: the worker registers
them on the bundled dev server, and tests register them on the test servers.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from workflows.case import CaseState
from workflows.conversation import Conversation
from workflows.models import CaseInput
from workflows.money import major_units

DUNNING_STATUS = SearchAttributeKey.for_keyword("DunningStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
AMOUNT_DUE = SearchAttributeKey.for_int("AmountDue")
"""In the currency's minor units (cents; yen are whole): exact, for sums and comparisons."""
AMOUNT_DUE_MAJOR = SearchAttributeKey.for_float("AmountDueMajor")
"""The same amount as an operator reads it, in major units: 49.8 for 4980 USD, 4980 for JPY."""
CURRENCY = SearchAttributeKey.for_keyword("Currency")
DUNNING_POLICY = SearchAttributeKey.for_keyword("DunningPolicy")
RETRY_COUNT = SearchAttributeKey.for_int("RetryCount")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("NextActionAt")
RETRY_MODEL = SearchAttributeKey.for_int("RetryModel")
"""Smart timing: the retry model version the case is pinned to (unset until a model plans it)."""
OPEN_INVOICES = SearchAttributeKey.for_keyword_list("OpenInvoices")
"""A customer's conversation: the invoices of their open cases (find it by any of them)."""

SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [
    DUNNING_STATUS,
    CUSTOMER_ID,
    INVOICE_ID,
    AMOUNT_DUE,
    CURRENCY,
    DUNNING_POLICY,
    RETRY_COUNT,
    NEXT_ACTION_AT,
    RETRY_MODEL,
    OPEN_INVOICES,
    AMOUNT_DUE_MAJOR,
]


def initial_search_attributes(case: CaseInput) -> TypedSearchAttributes:
    """What a case carries from its start, so it is findable before its first step."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(DUNNING_STATUS, "active"),
            SearchAttributePair(CUSTOMER_ID, case.customer_id),
            SearchAttributePair(INVOICE_ID, case.invoice_id),
            SearchAttributePair(AMOUNT_DUE, case.amount_due),
            SearchAttributePair(AMOUNT_DUE_MAJOR, _major(case.amount_due, case.currency)),
            SearchAttributePair(CURRENCY, case.currency),
            SearchAttributePair(DUNNING_POLICY, case.policy_name),
            SearchAttributePair(RETRY_COUNT, 0),
        ]
    )


def case_search_attributes(
    state: CaseState, next_action_at: datetime | None
) -> list[tuple[SearchAttributeKey, object]]:
    """The values a case should show now; None for `NextActionAt` means no action is planned.
    `RetryModel` is set once a model plans the case (never unset, so cases on the fixed
    schedule upsert what they always did)."""
    values: list[tuple[SearchAttributeKey, object]] = [
        (DUNNING_STATUS, state.status.value),
        (AMOUNT_DUE, state.amount_due),
        (AMOUNT_DUE_MAJOR, _major(state.amount_due, state.case.currency)),
        (RETRY_COUNT, len(state.attempts)),
        (NEXT_ACTION_AT, next_action_at),
    ]
    if state.retry_model_version is not None:
        values.append((RETRY_MODEL, state.retry_model_version))
    return values


def upsert_status(published: dict[str, object], state: CaseState) -> None:
    """From a lean case's workflow: upsert when what operators filter on changed (its status,
    amount due, or the retry model it was pinned to); the retry count rides along, so a
    charge costs no upsert of its own. `NextActionAt` stays unset: the next step's time is
    in the current details, which cost nothing."""
    wanted = [(k, v) for k, v in case_search_attributes(state, None) if k is not NEXT_ACTION_AT]
    status = [(k, v) for k, v in wanted if k in (DUNNING_STATUS, AMOUNT_DUE, RETRY_MODEL)]
    if any(published.get(k.name, _UNSET) != v for k, v in status):
        upsert_changed(published, wanted)


def conversation_search_attributes(
    conversation: Conversation, next_contact_at: datetime | None
) -> list[tuple[SearchAttributeKey, object]]:
    """What a customer's conversation shows: its open invoices, what they owe (when in one
    currency) and when it next writes."""
    owed = conversation.owed()
    single = next(iter(owed.items())) if len(owed) == 1 else None
    return [
        (CUSTOMER_ID, conversation.customer_id),
        (OPEN_INVOICES, sorted(c.invoice_id for c in conversation.cases.values()) or None),
        (AMOUNT_DUE, single[1] if single else None),
        (AMOUNT_DUE_MAJOR, _major(single[1], single[0]) if single else None),
        (CURRENCY, single[0] if single else None),
        (NEXT_ACTION_AT, next_contact_at),
    ]


def upsert_changed(
    published: dict[str, object], wanted: list[tuple[SearchAttributeKey, object]]
) -> None:
    """From a workflow: upsert those of `wanted` whose value differs from what `published`
    says was last set (each upsert is an action on Temporal Cloud; None unsets), and note
    them in `published`."""
    changed = [(k, v) for k, v in wanted if published.get(k.name, _UNSET) != v]
    if changed:
        workflow.upsert_search_attributes(
            [k.value_unset() if v is None else k.value_set(v) for k, v in changed]
        )
        published.update({k.name: v for k, v in changed})


def _major(amount: int, currency: str) -> float:
    """`AmountDueMajor`'s value: the amount as an operator reads it (a Double attribute).

    Babel reads its currency table from a file the first time (the sandbox forbids `open`);
    the table is fixed, so reading it is deterministic."""
    with workflow.unsafe.sandbox_unrestricted():
        return float(major_units(amount, currency))


_UNSET = object()
