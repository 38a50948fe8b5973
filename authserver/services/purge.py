"""Purge: erase expired successor seeds, dead codes and dead families."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from ..clock import utcnow
from ..database import db
from ..models import AccessToken
from ..models import AuthorizationCode
from ..models import RefreshToken
from ..models import TokenFamily


@dataclass(frozen=True)
class PurgeResult:
    """What one purge removed."""

    ciphertexts: int  # successor seeds erased (the name of the CLI's JSON key)
    codes: int
    families: int


PURGE_BATCH = 500


def purge(
    *, batch_size: int = PURGE_BATCH, retention: timedelta = timedelta(days=1)
) -> PurgeResult:
    """Erase expired successor seeds, dead codes and dead families, in batches.

    Each batch commits on its own, so the purge never holds long locks.
    A family is dead when revoked longer than ``retention`` ago, or when it has no
    usable refresh token and every access token expired longer than ``retention`` ago.
    """
    now = utcnow()
    ciphertexts = _batched(
        select(RefreshToken.id).where(
            RefreshToken.successor_ciphertext.is_not(None), RefreshToken.grace_ends_at <= now
        ),
        lambda ids: (
            update(RefreshToken).where(RefreshToken.id.in_(ids)).values(successor_ciphertext=None)
        ),
        batch_size,
    )
    codes = _batched(
        select(AuthorizationCode.id).where(
            or_(
                AuthorizationCode.expires_at <= now - retention,
                and_(
                    AuthorizationCode.used_at.is_not(None),
                    AuthorizationCode.used_at <= now - retention,
                ),
            )
        ),
        lambda ids: delete(AuthorizationCode).where(AuthorizationCode.id.in_(ids)),
        batch_size,
    )
    live_refresh = exists().where(RefreshToken.family_id == TokenFamily.id, RefreshToken.unspent())
    live_access = exists().where(
        AccessToken.family_id == TokenFamily.id,
        or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now - retention),
    )
    families = _batched(
        select(TokenFamily.id).where(
            or_(
                TokenFamily.revoked_at <= now - retention,
                and_(TokenFamily.live(), ~live_refresh, ~live_access),
            )
        ),
        lambda ids: delete(TokenFamily).where(TokenFamily.id.in_(ids)),
        batch_size,
    )
    return PurgeResult(ciphertexts, codes, families)


def _batched(select_ids: Any, make_statement: Any, batch_size: int) -> int:
    total = 0
    while True:
        ids = list(db.session.scalars(select_ids.limit(batch_size)))
        if not ids:
            return total
        db.session.execute(make_statement(ids).execution_options(synchronize_session=False))
        db.session.commit()
        total += len(ids)
        if len(ids) < batch_size:
            return total
