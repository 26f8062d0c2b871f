"""``auto`` routing: the task profile of a request, the offline embedder, the model catalog's use and the learned
router. Imported only when a route uses it (or the semantic cache needs the embedder)."""
