"""Personal Access Token mode: the account's token on every request, no login."""

from __future__ import annotations

from proxy.auth.personal_access_token import PersonalAccessTokenAuth
from proxy.modes.common import headless_guard, origins
from proxy.modes.parts import ModeContext, ModeParts


def build(context: ModeContext) -> ModeParts:
    settings = context.settings
    policy = origins(settings)
    guard = headless_guard(settings, policy)
    return ModeParts(PersonalAccessTokenAuth(settings.auth.personal_access_token, guard), policy)
