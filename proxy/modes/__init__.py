"""One module per auth mode: what the mode is built of, as a frozen ``ModeParts`` record
that ``app.create_app`` composes. Each mode is imported only when chosen, so that a
cookie-store proxy never loads the Redis client or service mode."""

from __future__ import annotations

from proxy.config import OAuth2Mode, PersonalAccessTokenMode
from proxy.modes.parts import ModeContext, ModeParts


def build_mode(context: ModeContext) -> ModeParts:
    mode = context.settings.mode
    if isinstance(mode, PersonalAccessTokenMode):
        from proxy.modes import personal_access_token

        return personal_access_token.build(context, mode)
    if isinstance(mode, OAuth2Mode):
        from proxy.modes import oauth2

        return oauth2.build(context, mode)
    from proxy.modes import service

    return service.build(context, mode)
