"""``/api/v1/tasks`` (load a batch, the next trial) and ``/api/v1/blobs`` (the task pictures)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from .auth import require_admin, require_annotator, require_any
from .db import Database
from .schemas import TaskIdsOut, TaskIn, TaskOut, to_new_tasks

router = APIRouter(prefix="/api/v1")
MAX_TASKS_PER_LOAD = 10_000


def task_out(db: Database, task: dict[str, Any], annotator_id: str) -> TaskOut:
    """The trial as one annotator sees it: no meta (gold answers stay hidden), sides fixed for them."""
    shown_left = db.shown_left(annotator_id, task["task_id"])
    a_url, b_url = (f"/api/v1/blobs/{task[k]}.png" for k in ("a_sha", "b_sha"))
    left, right = (a_url, b_url) if shown_left == "a" else (b_url, a_url)
    rnd = task["meta"].get("round")
    return TaskOut(task_id=task["task_id"], region=task["region"], round=rnd, shown_left=shown_left,
                   image_url=f"/api/v1/blobs/{task['image_sha']}.png", candidate_a_url=a_url,
                   candidate_b_url=b_url, left_url=left, right_url=right)


@router.post("/tasks", status_code=201, response_model=TaskIdsOut, dependencies=[Depends(require_admin)])
def load_tasks(tasks: list[TaskIn], request: Request) -> TaskIdsOut:
    if not tasks:
        raise HTTPException(422, "body: expected a non-empty JSON list of tasks")
    if len(tasks) > MAX_TASKS_PER_LOAD:
        raise HTTPException(422, f"body: at most {MAX_TASKS_PER_LOAD} tasks per request, got {len(tasks)}")
    new = to_new_tasks(tasks, request.app.state.render)
    return TaskIdsOut(task_ids=request.app.state.db.add_tasks(new))


@router.get("/tasks/next", response_model=TaskOut, responses={204: {"description": "no task left"}})
def next_task(request: Request, annotator: Annotated[dict, Depends(require_annotator)]):
    db: Database = request.app.state.db
    task = db.next_task(annotator["annotator_id"], request.app.state.judgments_per_task)
    if task is None:
        return Response(status_code=204)
    return task_out(db, task, annotator["annotator_id"])


@router.get("/blobs/{sha}.png", dependencies=[Depends(require_any)],
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def blob(sha: str, request: Request) -> Response:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise HTTPException(404, "no such picture")
    png = request.app.state.db.blob(sha)
    if png is None:
        raise HTTPException(404, "no such picture")
    # content-addressed: the bytes behind a URL never change
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})
