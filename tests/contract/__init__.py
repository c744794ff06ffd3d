"""Contract suites: one behavioural suite run against every store and every engine."""
