"""The world a simulated case meets: issuers that approve or decline, customers who respond.

A `World` answers the only two questions the dunning policy core cannot answer itself: what
happens if this case is charged now, and what does this customer do after this message.
Everything else (when to charge, what to send, when to give up) is the policy core's, run
unchanged by the simulator. Worlds are chosen by import path (`package.module:factory`), so
a team can model its own customers next to the shipped synthetic world.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from workflows.contact_hours import valid_zone
from workflows.models import CaseInput, ChargeResult, Failure, NotifyRequest
from workflows.policy import Channel, DeclineCodes, Policy, Tone

# Short enough that the ids derived from it (payment methods, invoices) stay valid ids.
SIM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,80}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimCase(_Frozen):
    """One failed payment to simulate: the facts a policy and a world may look at."""

    id: str = Field(pattern=SIM_ID_PATTERN, description="Case and invoice id.")
    customer_id: str = Field(pattern=SIM_ID_PATTERN)
    amount: int = Field(gt=0, description="In the currency's minor units.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    failure: DeclineCodes = Field(description="The codes of the decline that opened the case.")
    failed_at: AwareDatetime
    time_zone: str | None = Field(default=None, description="IANA zone; None when unknown.")
    plan: str = "basic"
    tenure_days: int | None = Field(default=None, ge=0)
    card_brand: str | None = Field(default=None, description="As Stripe names it: visa, ...")
    card_country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="Where the card was issued, ISO-3166."
    )
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="Where the customer lives, ISO-3166."
    )
    paid_history: list[AwareDatetime] = Field(
        default_factory=list,
        description="When this customer's earlier invoices were paid, oldest first: what the "
        "store keeps from billing events, and what a planner may learn their paydays from.",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None and not valid_zone(zone):
            raise ValueError(f"unknown time zone {zone!r}")
        return zone

    @property
    def amount_band(self) -> str:
        """small (< 20.00), medium (< 100.00) or large, in minor units of any currency."""
        if self.amount < 2000:
            return "small"
        return "medium" if self.amount < 10000 else "large"

    @property
    def payment_method(self) -> str:
        """The token of the card that failed."""
        return f"pm_{self.id}"

    @property
    def time_zones(self) -> list[str]:
        """The zones contact hours hold in, as the workflow's `contact_facts` would give them."""
        return [self.time_zone] if self.time_zone else []

    def case_input(self, policy: Policy) -> CaseInput:
        """The case as billing would start it, under `policy`."""
        return CaseInput(
            case_id=self.id,
            invoice_id=self.id,
            customer_id=self.customer_id,
            amount_due=self.amount,
            currency=self.currency,
            failure=Failure(
                **self.failure.model_dump(exclude={"card_brand", "card_country"}),
                card_brand=self.failure.card_brand or self.card_brand,
                card_country=self.failure.card_country or self.card_country,
                failed_at=self.failed_at,
            ),
            policy_name=policy.name,
            policy_version=policy.version,
            payment_method=self.payment_method,
        )


class ChargeAnswer(_Frozen):
    """What the issuer says to one charge: approved, or declined with its codes."""

    approved: bool
    decline: DeclineCodes | None = None

    @model_validator(mode="after")
    def _decline_iff_declined(self) -> ChargeAnswer:
        if self.approved and self.decline is not None:
            raise ValueError("an approved charge carries no decline codes")
        if not self.approved and (self.decline is None or not self.decline.decline_code):
            raise ValueError("a declined charge needs a decline code")
        return self

    @classmethod
    def approval(cls) -> ChargeAnswer:
        """The charge went through."""
        return cls(approved=True)

    @classmethod
    def declined_with(cls, decline_code: str, **codes: str) -> ChargeAnswer:
        """The charge was declined with `decline_code` (and any network codes)."""
        return cls(approved=False, decline=DeclineCodes(decline_code=decline_code, **codes))

    def result(self, payment_method: str | None) -> ChargeResult:
        """The answer as a gateway gives it to the workflow."""
        codes = self.decline.model_dump() if self.decline else {}
        message = "approved" if self.approved else f"declined: {codes['decline_code']}"
        return ChargeResult(
            approved=self.approved, payment_method=payment_method, message=message, **codes
        )


class SentMessage(_Frozen):
    """A message step that reached the customer."""

    step: str = Field(description="e.g. reminder-2, outcome-recovered")
    template: str = Field(description="e.g. reminder_gentle, card_update, final_notice")
    tone: Tone | None = None
    channels: list[Channel]

    @classmethod
    def of(cls, request: NotifyRequest) -> SentMessage:
        """The message a notify request sends."""
        return cls(
            step=request.step,
            template=request.template,
            tone=request.tone,
            channels=list(request.channels),
        )


class ActionKind(StrEnum):
    """What a customer may do about a failed payment."""

    UPDATE_CARD = "update_card"
    PAY = "pay"
    DISPUTE = "dispute"
    CANCEL = "cancel"
    OPT_OUT = "opt_out"
    """Stop one channel (unsubscribe, or STOP to a text); the case itself goes on."""


class CustomerAction(_Frozen):
    """Something a customer does at `at`, in answer to a message."""

    kind: ActionKind
    at: AwareDatetime
    channel: Channel | None = Field(default=None, description="The channel an opt-out stops.")

    @model_validator(mode="after")
    def _channel_iff_opt_out(self) -> CustomerAction:
        if (self.kind is ActionKind.OPT_OUT) != (self.channel is not None):
            raise ValueError("an opt-out, and only an opt-out, names the channel it stops")
        return self


@runtime_checkable
class World(Protocol):
    """Issuers and customers, as a simulation meets them.

    A world answers two questions and nothing else. Answers must be deterministic for a given
    world (build it from a seed) and should not depend on the order cases are asked about.
    A world may remember what it said about a case (a customer who said they will update
    their card has a new card from then on): use a fresh world for each simulated run.
    """

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        """What happens if `case` is charged (its `attempt`-th charge) at `at`."""
        ...

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        """What the customer does after `message` reached them at `at`: nothing (None),
        or one action at a time no earlier than `at`."""
        ...


@runtime_checkable
class PopulatedWorld(World, Protocol):
    """A world that brings its own customers: the cases to simulate, and the earlier ones
    whose dunning made the training history a planner learns from.

    Optional: a world with only `charge` and `respond` is simulated on the shipped synthetic
    population (`simulation.synthetic.generate_cases`)."""

    def population(self, n: int, start: datetime, cohort: str) -> list[SimCase]:
        """`n` failed payments from `start` on, over the four weeks after it. `cohort` is
        ``"live"`` for the cases compared and ``"history"`` for the month before, whose runs
        train the model: ids must differ between cohorts, and the same arguments must give
        the same cases."""
        ...


class WorldError(ValueError):
    """A world could not be loaded; the message says which part of its path is wrong."""


def load_world(path: str, seed: int) -> World:
    """The world built by the factory at `path` (``package.module:factory``) from `seed`."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise WorldError(f"world {path!r}: expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(f"{err.name}.")):
            raise WorldError(f"world {path!r}: no module named {module_name!r}") from err
        raise WorldError(f"world {path!r}: importing {module_name} failed: {err}") from err
    except Exception as err:
        raise WorldError(f"world {path!r}: importing {module_name} failed: {err}") from err
    factory = getattr(module, attribute, None)
    if factory is None:
        raise WorldError(f"world {path!r}: module {module_name} has no {attribute!r}")
    if not callable(factory):
        raise WorldError(f"world {path!r}: {attribute} is not a factory (not callable)")
    try:
        world = factory(seed)
    except Exception as err:
        raise WorldError(f"world {path!r}: the factory failed: {err}") from err
    if not isinstance(world, World):
        raise WorldError(
            f"world {path!r}: the factory returned {type(world).__name__}, "
            "which has no charge() and respond()"
        )
    return world
