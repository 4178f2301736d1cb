"""What the tests and the benchmark scripts use and users do not: servers started for a test (servers.py). Nothing
in valuesim's own modules imports from here."""
