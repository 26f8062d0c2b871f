"""The OpenAI Agents SDK agent that the client tests run (``test_responses_clients``, ``test_client_agents_chat``):
one tool, ``get_weather``, which notes each city it is asked about. Import it after ``importorskip("agents")``."""

from __future__ import annotations

from agents import Agent, Model, function_tool, set_tracing_disabled


def weather_agent(model: Model) -> tuple[Agent, list[str]]:
    """The agent, and the list of cities its tool was called with (in order)."""
    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    return Agent(name="helper", instructions="Use your tools.", tools=[get_weather], model=model), calls
