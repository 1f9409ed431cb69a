from django.conf import settings


def trading_mode(request):
    """Every page says whether it is looking at a simulation or at live trading."""
    return {
        "SIMULATION_MODE": settings.SIMULATION_MODE,
        "TRADING_ENABLED": settings.TRADING_ENABLED,
    }
