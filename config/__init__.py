"""Settings and the data the business edits: policies, decline codes, message templates."""
