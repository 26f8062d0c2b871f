"""Managed state: what the gateway keeps between calls for its clients (stored Responses API responses in
:mod:`.responses`). Each module opens its own tables of the store; nothing here is on the path of a call that does
not use it."""
