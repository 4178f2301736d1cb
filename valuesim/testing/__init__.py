"""What the tests and the benchmark scripts use and users do not: synthetic WVS-7 folders in the real layout
(synthetic.py, synthetic_codebook.py, synthetic_full.py with synthetic.toml; the file writers in writers.py;
`python -m valuesim.testing OUT [--full]`) and servers started for a test (servers.py). Nothing in valuesim's own
modules imports from here."""
