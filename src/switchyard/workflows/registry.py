"""The workflows a gateway can run: the YAML files its config names, loaded (and checked) once at start."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .definition import Workflow, load_workflow_file

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
        tools = set(config.tools)
        for f in config.files:
            path = f if os.path.isabs(f) else os.path.join(base, f)
            wf = load_workflow_file(path, tools)
            self.workflows[wf.name] = (wf, f"file:{f}")
        self.runtime: Any = None

    def get(self, name: str, principal: Principal) -> tuple[Workflow, str]:
        found = self.workflows.get(name)
        if found is None:
            raise NotFound(f"No workflow named {name!r}.", param="name", code="workflow_not_found")
        return found

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
