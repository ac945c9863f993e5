"""A Flask view that runs an agent whose tool reads the app's config.

The tool runs in a worker thread; ``init_app`` gives the app a runtime with
the :class:`~agentsync.integrations.flask.FlaskContext` hook, so each call
gets an application context of its own, popped when the tool returns.

Offline demo, against a scripted stand-in for the Messages API::

    python examples/flask_app.py

Served for real (needs ``ANTHROPIC_API_KEY``)::

    flask --app examples/flask_app:create_app run
    curl -X POST localhost:5000/ask -H 'content-type: application/json' \\
        -d '{"prompt": "When are you open on Saturday?"}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flask

import agentsync
from agentsync.integrations import flask as agentsync_flask

if TYPE_CHECKING:
    import anthropic


@agentsync.tool(timeout=5)
def shop_hours(day: str) -> str:
    """The shop's opening hours on a day of the week.

    Args:
        day: the day's English name, such as "Saturday".
    """
    return flask.current_app.config["SHOP_HOURS"].get(day.lower(), "closed")


def create_app(client: anthropic.Anthropic | None = None) -> flask.Flask:
    """The app; ``client`` defaults to an SDK client from the environment."""
    app = flask.Flask(__name__)
    app.config["SHOP_HOURS"] = {"saturday": "10:00-16:00", "sunday": "closed"}
    agentsync_flask.init_app(app, tools=[shop_hours], max_workers=4, default_timeout=10)

    @app.post("/ask")
    def ask() -> Any:
        prompt = (flask.request.get_json(silent=True) or {}).get("prompt", "")
        if not prompt:
            return {"error": "send a JSON body with a prompt"}, 400
        try:
            result = agentsync.run_agent(
                prompt,
                client=client,
                runtime=agentsync_flask.current_runtime(),
                deadline=60,
            )
        except agentsync.AgentRunError as exc:
            # The run ended without an answer: say why instead of a bare 500.
            return {"error": str(exc)}, 502
        return {"answer": result.text, "tools": [c.name for c in result.tool_calls]}

    return app


def demo() -> None:
    """One request through the test client, the model played by a script."""
    from agentsync.testing import FakeMessagesServer

    with FakeMessagesServer() as server:
        server.add_tool_use("shop_hours", {"day": "Saturday"})
        server.add_reply("On Saturday we are open from 10:00 to 16:00.")
        app = create_app(client=server.client())

        response = app.test_client().post(
            "/ask", json={"prompt": "When are you open on Saturday?"}
        )

        print(response.status_code, response.json)
        print("the tool answered:", server.last_request.tool_results[0]["content"])


if __name__ == "__main__":
    demo()
