"""A family of simulated worlds that differ in hidden mechanics, to train and judge a retry
planner on businesses it has never seen. Each module is one imagined business with its own
currency, paydays, hours, patience and channels; `common` holds what they share."""

WORLDS = (
    "simulation.synthetic:factory",
    "simulation.worlds.payroll_us:factory",
    "simulation.worlds.monthly_eu:factory",
    "simulation.worlds.gig_latam:factory",
    "simulation.worlds.enterprise_jp:factory",
)
