"""Activities: thin, typed, idempotent adapters to payment gateways, notifiers and the store."""
