"""``/api/v1/judgments``: submit (idempotent by client_id), undo the last answer, list one's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from .auth import require_annotator
from .db import Database
from .routes_tasks import task_out
from .schemas import JudgmentIn, JudgmentOut, UndoOut

router = APIRouter(prefix="/api/v1")


@router.post("/judgments", response_model=JudgmentOut, status_code=201,
             responses={200: {"description": "a repeat of an already stored client_id"},
                        409: {"description": "contradicts a stored answer"}})
def submit(body: JudgmentIn, request: Request, response: Response,
           annotator: Annotated[dict, Depends(require_annotator)]) -> JudgmentOut:
    db: Database = request.app.state.db
    judgment, created = db.submit(annotator["annotator_id"], body.task_id, body.region, body.choice,
                                  body.client_id, body.response_ms)
    if not created:
        response.status_code = 200
    return JudgmentOut(**judgment)


@router.post("/judgments/undo", response_model=UndoOut)
def undo(request: Request, annotator: Annotated[dict, Depends(require_annotator)]) -> UndoOut:
    db: Database = request.app.state.db
    undone = db.undo_last(annotator["annotator_id"])
    if undone is None:
        raise HTTPException(404, "nothing to undo: you have no answers")
    task = db.task(undone["task_id"])
    return UndoOut(undone=JudgmentOut(**undone),
                   task=None if task is None else task_out(db, task, annotator["annotator_id"]))


@router.get("/judgments", response_model=list[JudgmentOut])
def mine(request: Request, annotator: Annotated[dict, Depends(require_annotator)]) -> list[JudgmentOut]:
    rows = request.app.state.db.judgments(annotator["annotator_id"])
    return [JudgmentOut(**{k: r[k] for k in JudgmentOut.model_fields}) for r in rows]
