from django.http import JsonResponse

from .health import CHECKS, run_checks


def healthz(request):
    """Health of the web process and of the system around it (the checks of ``manage.py
    healthcheck``, see tradeops/health.py).

    503 when a critical dependency (database, Redis) is down: this process cannot serve. Other
    failures (feed, beat, workers, analysis) answer 200 with ``"status": "degraded"`` so a load
    balancer does not recycle a healthy web process for them; ``?strict=1`` makes any failure 503.
    ``?checks=database,redis`` limits the checks (a cheap liveness probe).
    """
    names = [n for n in request.GET.get("checks", "").split(",") if n] or list(CHECKS)
    try:
        results = run_checks(names)
    except ValueError as exc:
        return JsonResponse({"status": "error", "error": str(exc)}, status=400)
    strict = request.GET.get("strict") in ("1", "true", "yes")
    failed = [r for r in results if not r.ok]
    critical_down = any(r.critical for r in failed)
    ok = not failed
    status = 200 if ok or (not critical_down and not strict) else 503
    return JsonResponse(
        {
            "status": "ok" if ok else ("down" if critical_down else "degraded"),
            "checks": {r.name: ("ok" if r.ok else r.detail) for r in results},
            "details": {r.name: r.to_dict() for r in results},
        },
        status=status,
    )
