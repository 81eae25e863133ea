"""One module per auth mode: what the mode is built of, as a frozen ``ModeParts`` record
that ``app.create_app`` composes. Each mode is imported only when chosen, so that a
cookie-store proxy never loads the Redis client or service mode."""

from __future__ import annotations

from proxy.modes.parts import ModeContext, ModeParts


def build_mode(context: ModeContext) -> ModeParts:
    mode = context.settings.auth.mode
    if mode == "personal_access_token":
        from proxy.modes import personal_access_token

        return personal_access_token.build(context)
    if mode == "service":
        from proxy.modes import service

        return service.build(context)
    from proxy.modes import oauth2

    return oauth2.build(context)
