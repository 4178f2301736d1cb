"""What a run would cost before it starts: runs (evaluate and bench: LM calls, tokens, dollars) and compile (an
optimizer's calls)."""
