"""Running programs: the run's options (runner.Setup), the runner that wires benchmark -> program -> predictions ->
metrics -> MLflow, bench (many runs side by side), predict (thread pool or batches into the store), store (the
durable predictions of a run) and folder (a run folder's identity and lock)."""
