"""Durable multi-model workflows (docs/workflows.md): YAML DAGs of model, tool, transform, condition and map steps,
run on DBOS. Imported only when the config has a ``workflows:`` section; DBOS only when the gateway starts."""
