"""Bearer-token authentication as FastAPI dependencies: the admin token and annotator tokens.

Missing or unknown tokens are 401; a valid token of the wrong role is 403. The admin token is
compared in constant time; annotator tokens are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(401, "missing Authorization header: expected 'Bearer <token>'",
                            headers=_CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "malformed Authorization header: expected 'Bearer <token>'",
                            headers=_CHALLENGE)
    return token.strip()


def _is_admin(request: Request, token: str) -> bool:
    return hmac.compare_digest(token.encode(), request.app.state.admin_token.encode())


def require_admin(request: Request) -> None:
    token = bearer_token(request)
    if _is_admin(request, token):
        return
    if request.app.state.db.annotator_for_token(token) is not None:
        raise HTTPException(403, "this endpoint needs the admin token, not an annotator token")
    raise HTTPException(401, "unknown token", headers=_CHALLENGE)


def require_annotator(request: Request) -> dict[str, Any]:
    token = bearer_token(request)
    annotator = request.app.state.db.annotator_for_token(token)
    if annotator is not None:
        return annotator
    if _is_admin(request, token):
        raise HTTPException(403, "this endpoint needs an annotator token; the admin does not answer tasks")
    raise HTTPException(401, "unknown token", headers=_CHALLENGE)


def require_any(request: Request) -> None:
    """Admin or any annotator (the task pictures)."""
    token = bearer_token(request)
    if not _is_admin(request, token) and request.app.state.db.annotator_for_token(token) is None:
        raise HTTPException(401, "unknown token", headers=_CHALLENGE)
