"""The dashboard and the staff status page."""
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.health import system_health
from webapp.models import WorkerHeartbeat
from webapp.queueing import QueueUnavailable
from webapp.services import heartbeat_request


@require_GET
def home(request):
    return render(request, "webapp/home.html")


@require_GET
@staff_member_required
def status(request):
    checks, workers = system_health()
    beats = WorkerHeartbeat.objects.all()[:9]
    return render(
        request, "webapp/status.html", {"checks": checks, "workers": workers, "beats": beats}
    )


@require_POST
@staff_member_required
def status_heartbeat(request):
    try:
        heartbeat_request()
    except QueueUnavailable as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "A test task went to every queue; reload to see who answered.")
    return redirect("status")
