"""The workflows a gateway can run: the YAML files its config names, loaded (and checked) once at start."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .definition import Known, Workflow, load_workflow_file

if TYPE_CHECKING:
    from ..config.workflows import WorkflowsConfig
    from ..governance.auth import Principal
    from ..pipeline import Gateway


class Registry:
    """The definitions by name, and the DBOS runtime (a gateway service: started and closed with it)."""

    def __init__(self, gateway: Gateway, config: WorkflowsConfig, config_path: str | None) -> None:
        self.gateway = gateway
        self.config = config
        base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
        self.workflows: dict[str, tuple[Workflow, str]] = {}
        # prompts are not looked up here: they live in the store, and may be published after the gateway starts
        self.known = Known(tools=set(config.tools), conversations=gateway.config.state is not None)
        for f in config.files:
            path = f if os.path.isabs(f) else os.path.join(base, f)
            wf = load_workflow_file(path, self.known)
            self.workflows[wf.name] = (wf, f"file:{f}")
        self.runtime: Any = None
        self._org_cache: dict[tuple[str, str, int], tuple[Workflow, str]] = {}

    async def get(self, name: str, principal: Principal) -> tuple[Workflow, str]:
        """The caller's org's newest version of ``name`` (stored through the admin API), else the config file's."""
        gov = self.gateway.governance
        if principal.org_id is not None and gov is not None:
            found = await gov.db.run(self._org_definition, principal.org_id, name)
            if found is not None:
                return found
        got = self.workflows.get(name)
        if got is None:
            raise NotFound(f"No workflow named {name!r}.", param="name", code="workflow_not_found")
        return got

    def _org_definition(self, org_id: str, name: str) -> tuple[Workflow, str] | None:
        import yaml

        from ..governance.org_workflows import latest_definition
        from .definition import WorkflowInvalid, parse_workflow

        gov = self.gateway.governance
        assert gov is not None
        with gov.db.read() as conn:
            row = latest_definition(conn, org_id, name)
        if row is None:
            return None
        version, text = row
        key = (org_id, name, version)
        if key not in self._org_cache:
            try:
                wf = parse_workflow(yaml.safe_load(text), f"org:{org_id}/{name}", self.known)
            except WorkflowInvalid as e:
                from ..errors import InvalidRequest

                raise InvalidRequest("The org's workflow cannot run here: " + "; ".join(e.problems),
                                     param="name", code="invalid_workflow") from None
            self._org_cache[key] = (wf.model_copy(update={"version": version}), f"org:{org_id}")
            while len(self._org_cache) > 256:
                del self._org_cache[next(iter(self._org_cache))]
        return self._org_cache[key]

    def describe(self, principal: Principal) -> list[dict[str, Any]]:
        return [{"name": wf.name, "version": wf.version, "description": wf.description, "source": src,
                 "steps": [s.id for s in wf.steps]} for wf, src in self.workflows.values()]

    async def start(self) -> None:
        from .runner import Runtime  # DBOS is imported here, not when the gateway is built

        self.runtime = Runtime(self.gateway, self.config, self.gateway.config.store)
        await self.runtime.start()

    async def aclose(self) -> None:
        if self.runtime is not None:
            await self.runtime.aclose()
            self.runtime = None
