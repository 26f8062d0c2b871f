"""PromptOps: managed prompts (versions and labels), their use in requests, experiments and their reports.

* :mod:`.template`: a version's spec, checked at publish time and compiled once (Jinja2's sandbox, strict
  undefined variables, a JSON schema for the variables);
* :mod:`.registry`: prompts, versions and labels in the store, under RBAC, every change audited;
* :mod:`.stage`: the ``Prompt`` stage, which renders ``"prompt": {...}`` of a chat or messages request;
* :mod:`.experiments`: traffic splits between prompt versions and models (fixed weights or a bandit);
* :mod:`.report`: the per-variant analytics of an experiment.
"""
