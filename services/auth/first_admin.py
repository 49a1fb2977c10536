"""Whether a new account starts as an administrator: the platform's bootstrap rule, in one
place for registration (:func:`services.auth.service.register`) and single sign-on
(:mod:`services.auth.sso_accounts`)."""

from __future__ import annotations

from sqlmodel import Session, select

from services.auth.models import AuthLock, User
from services.auth.settings import AuthSettings

__all__ = ["new_account_is_admin"]


def new_account_is_admin(session: Session, settings: AuthSettings, email: str) -> bool:
    """Whether the account about to be created for ``email`` (normalised) is an admin:

    - with ``AIDP_ADMIN_EMAILS`` set: exactly the emails it names;
    - otherwise, on a platform bound to loopback only: the very first account. "Am I the
      first?" is serialised across replicas by the ``first-admin`` row lock, held until
      ``session``'s transaction ends, so the caller creates the user in that transaction;
    - otherwise: nobody (admins are made by other admins)."""
    if settings.admin_emails:
        return email in settings.admin_emails
    if settings.bound_to_loopback():
        lock = select(AuthLock).where(AuthLock.name == "first-admin").with_for_update()
        session.exec(lock).first()
        return session.exec(select(User.id).limit(1)).first() is None
    return False
