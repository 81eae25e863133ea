"""Personal Access Token mode: the account's token on every request, no login."""

from __future__ import annotations

from proxy.auth.personal_access_token import PersonalAccessTokenAuth
from proxy.config import PersonalAccessTokenMode
from proxy.modes.common import headless_guard, origins, shared_access
from proxy.modes.parts import ModeContext, ModeParts


def build(context: ModeContext, mode: PersonalAccessTokenMode) -> ModeParts:
    policy = origins(context.settings)
    guard = headless_guard(context.settings, policy)
    shared = shared_access(context.settings, guard)
    return ModeParts(
        PersonalAccessTokenAuth(mode, shared.access),
        policy,
        lifecycle=shared.lifecycle,
        reload=shared.reload,
    )
