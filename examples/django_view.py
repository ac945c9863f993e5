"""A Django view that runs an agent whose tool queries the database.

The tool runs in a worker thread, which Django's request cycle never
cleans up; the :class:`~agentsync.integrations.django.DjangoDB` hook closes
stale connections before each call and the thread's connections after it.
In a project, ``RUNTIME``, the tool and the view live in an app's module
and the tool uses the ORM (``Order.objects.filter(status=status).count()``);
here raw SQL keeps the example one runnable file.

Offline demo, against a scripted stand-in for the Messages API and a SQLite
file::

    python examples/django_view.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

import agentsync
from agentsync.integrations.django import DjangoDB


@agentsync.tool(timeout=5)
def count_orders(status: str) -> int:
    """Count the orders with a status.

    Args:
        status: "open", "shipped" or "cancelled".
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders WHERE status = %s", [status])
        return int(cursor.fetchone()[0])


# One runtime for the process: its workers serve every request.
RUNTIME = agentsync.Runtime(
    tools=[count_orders], hooks=[DjangoDB()], max_workers=8, default_timeout=10
)
# The SDK client; None makes one from ANTHROPIC_API_KEY. The demo swaps it.
CLIENT = None


@require_POST
def ask(request: HttpRequest) -> JsonResponse:
    prompt = request.POST.get("prompt", "")
    if not prompt:
        return JsonResponse({"error": "post a prompt"}, status=400)
    try:
        result = agentsync.run_agent(
            prompt, runtime=RUNTIME, client=CLIENT, deadline=60
        )
    except agentsync.AgentRunError as exc:
        return JsonResponse({"error": str(exc)}, status=502)
    return JsonResponse({"answer": result.text})


urlpatterns = [path("ask/", ask)]


def demo() -> None:
    """Configure Django in-process and post one prompt through the test client."""
    global CLIENT
    import django
    from django.conf import settings
    from django.test import Client

    from agentsync.testing import FakeMessagesServer

    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "shop.sqlite3"
        settings.configure(
            SECRET_KEY="example",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": str(db_path),
                }
            },
        )
        django.setup()
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")
            cursor.executemany(
                "INSERT INTO orders (status) VALUES (%s)",
                [["open"], ["open"], ["shipped"]],
            )

        with FakeMessagesServer() as server, RUNTIME:
            server.add_tool_use("count_orders", {"status": "open"})
            server.add_reply("There are 2 open orders.")
            CLIENT = server.client()

            response = Client().post("/ask/", {"prompt": "How many orders are open?"})

            print(response.status_code, response.json())
            print("the tool answered:", server.last_request.tool_results[0]["content"])
        connection.close()


if __name__ == "__main__":
    demo()
