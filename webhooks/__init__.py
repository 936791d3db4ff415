"""The billing-event receiver: Stripe webhooks and provider-neutral events become cases.

    dunning serve                 # the receiver alone
    dunning worker --serve        # beside a worker (what `make run` does)

`POST /webhooks/stripe` takes Stripe's signed events, `POST /events` the documented
provider-neutral JSON (config/billing-event.schema.json), `GET /healthz` says it is up.
"""
