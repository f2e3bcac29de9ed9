"""A Django view per ESP webhook: verified, recorded, then acknowledged.

from functools import partial
from sendguard_postmark import parse_webhook
from sendguard_django.webhooks import webhook_view

urlpatterns = [
path("hooks/postmark", webhook_view(partial(parse_webhook, credentials=[("hook", "s3cret")]))),
]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from sendguard.webhooks import Verify, handle_sync
from sendguard_django._config import get_guard

__all__ = ["webhook_view"]


def webhook_view(verify: Verify) -> Callable[..., Any]:
    """A POST-only, CSRF-exempt view that hands each request to *verify* and the guard."""

    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        headers = {k: str(v) for k, v in request.headers.items()}
        answer = handle_sync(get_guard(), verify, headers, request.body)
        return HttpResponse(answer.body, status=answer.status, content_type="text/plain")

    return view
