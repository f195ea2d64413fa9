"""Stage 4 of the flow: the one executor (unit keys, claims, skip/resume, aggregates), the MLflow result store,
launcher jobs and sweeps."""
