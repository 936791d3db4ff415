"""The offline policy simulator: run dunning policies over many cases in a model world."""
