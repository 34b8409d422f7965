"""Admin endpoints: annotator accounts, JSONL export, per-annotator quality; and ``/api/v1/me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from .auth import require_admin, require_annotator
from .export import export_rows, to_jsonl
from .schemas import AnnotatorIn, AnnotatorOut, MeOut, StatsOut

router = APIRouter(prefix="/api/v1")


@router.post("/annotators", status_code=201, response_model=AnnotatorOut,
             dependencies=[Depends(require_admin)])
def add_annotator(body: AnnotatorIn, request: Request) -> AnnotatorOut:
    return AnnotatorOut(**request.app.state.db.add_annotator(body.name))


@router.get("/export", dependencies=[Depends(require_admin)], response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def export(request: Request, include_skip: bool = False) -> Response:
    rows = export_rows(request.app.state.db, include_skip=include_skip)
    return Response(to_jsonl(rows), media_type="application/x-ndjson")


@router.get("/stats", response_model=StatsOut, dependencies=[Depends(require_admin)])
def stats(request: Request) -> StatsOut:
    return StatsOut(**request.app.state.db.stats())


@router.get("/me", response_model=MeOut)
def me(request: Request, annotator: Annotated[dict, Depends(require_annotator)]) -> MeOut:
    progress = request.app.state.db.progress(annotator["annotator_id"])
    return MeOut(**annotator, **progress, break_every_trials=request.app.state.break_every_trials,
                 break_every_minutes=request.app.state.break_every_minutes)
