"""The refusal that ends a single sign-on (:class:`SsoRefused`) and what each of its codes
tells the person signing in. Its own module because the flow (:mod:`services.auth.sso`),
the account rules (:mod:`services.auth.sso_accounts`) and the routes all raise or read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import AidpError

if TYPE_CHECKING:
    from services.auth.models import OidcFlow

__all__ = ["SsoRefused"]

_MESSAGES = {
    "sso_state_invalid": "this sign-in link is invalid, expired or was opened in another "
    "browser; start again",
    "sso_email_missing": "the identity provider did not share an email address",
    "sso_registration_closed": "there is no account for this email and registration is "
    "closed; ask an administrator",
    "sso_invitation_required": "this platform is invite-only: ask an administrator for an "
    "invitation and sign in with it",
    "sso_account_disabled": "this account is disabled; ask an administrator",
    "sso_identity_conflict": "this account is already linked to another identity at the "
    "provider; ask an administrator",
    "sso_retry": "signing in raced with another sign-in; try again",
}


class SsoRefused(AidpError):
    """A sign-in that ends here; ``code`` (``sso_…``) is what the UI or CLI is told."""

    status = 403

    def __init__(self, code: str, message: str | None = None, *, cli: OidcFlow | None = None):
        super().__init__(message or _MESSAGES.get(code, "single sign-on failed"), code=code)
        self.cli = cli  # a CLI flow: the error goes back to its loopback listener
