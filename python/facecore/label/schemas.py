"""Pydantic models for every request and response body of the ``/api/v1`` HTTP contract, and the
checks that turn an uploaded task into a :class:`~facecore.label.db.NewTask` (base64 that really
is a PNG, 61 finite parameters, a meta object that says what kind of task it is)."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from .db import Invalid, NewTask

N_PARAMS = 61
N_BLENDSHAPES = 52  # channels 0-51 in [0, 1], 52-60 (head and eye pose) in [-1, 1]
MAX_PNG_SIDE = 4096

Region = Literal["upper", "lower", "face"]
Choice = Literal["a", "b", "tie", "skip"]
ClientId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
TaskId = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------------
class CandidateIn(_Body):
    """A candidate: a pre-rendered PNG (base64) and/or its 61 ARKit parameters. With params only,
    the app renders it at load time (:mod:`facecore.label.render`) unless rendering is turned off."""

    png: StrictStr | None = None
    params: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(default=None, max_length=1000)


class TaskIn(_Body):
    image: StrictStr = Field(description="the input photo, PNG as base64")
    candidate_a: CandidateIn
    candidate_b: CandidateIn
    region: Region
    meta: dict[str, Any] = Field(default_factory=dict)


class AnnotatorIn(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]


class JudgmentIn(_Body):
    task_id: TaskId
    region: Region
    choice: Choice
    client_id: ClientId
    response_ms: Annotated[StrictInt, Field(ge=0, le=86_400_000)]


# -- responses ------------------------------------------------------------------------------------
class AnnotatorOut(BaseModel):
    annotator_id: str
    name: str
    token: str


class TaskIdsOut(BaseModel):
    task_ids: list[str]


class TaskOut(BaseModel):
    """One trial for one annotator. ``left_url``/``right_url`` already follow ``shown_left``."""

    task_id: str
    region: Region
    round: int | None
    shown_left: Literal["a", "b"]
    image_url: str
    candidate_a_url: str
    candidate_b_url: str
    left_url: str
    right_url: str


class JudgmentOut(BaseModel):
    client_id: str
    task_id: str
    annotator_id: str
    region: Region
    choice: Choice
    shown_left: Literal["a", "b"]
    response_ms: int
    created_at: str


class UndoOut(BaseModel):
    undone: JudgmentOut
    task: TaskOut | None


class MeOut(BaseModel):
    annotator_id: str
    name: str
    answered: int
    remaining: int
    total: int
    break_every_trials: int
    break_every_minutes: float


class AnnotatorStats(BaseModel):
    annotator_id: str
    name: str | None
    count: int
    skips: int
    ties: int
    gold_n: int
    gold_accuracy: float | None
    repeat_n: int
    repeat_consistency: float | None
    median_response_ms: float | None


class StatsOut(BaseModel):
    annotators: list[AnnotatorStats]
    tasks: int
    judgments: int
    undone: int


# -- task validation ------------------------------------------------------------------------------
def decode_png(value: str, where: str) -> bytes:
    """Base64 text -> PNG bytes, refusing anything that does not decode to a readable PNG."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"{where}: expected PNG as base64, got invalid base64 ({exc})") from None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Invalid(f"{where}: expected PNG as base64, the decoded bytes are not a PNG")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "PNG" or max(im.size) > MAX_PNG_SIDE or min(im.size) < 1:
                raise Invalid(f"{where}: expected a PNG of at most {MAX_PNG_SIDE} px a side, got {im.size}")
            im.verify()  # checks chunk CRCs without decoding the pixels
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise Invalid(f"{where}: expected PNG as base64, the PNG is damaged ({exc})") from None
    return raw


def check_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        json.dumps(meta, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{where}: expected valid Unicode text (no lone surrogates)") from None
    except ValueError:
        raise Invalid(f"{where}: expected JSON without NaN/Infinity") from None
    kind = meta.get("kind", "pair")
    if kind not in ("pair", "gold", "repeat"):
        raise Invalid(f"{where}.kind: expected 'pair', 'gold' or 'repeat', got {kind!r}")
    if kind == "gold" and meta.get("gold") not in ("a", "b"):
        raise Invalid(f"{where}.gold: a gold task needs gold = 'a' or 'b' (the true candidate)")
    if kind == "repeat" and not isinstance(meta.get("repeat_of"), str):
        raise Invalid(f"{where}.repeat_of: a repeat task needs repeat_of = the original task_id")
    rnd = meta.get("round")
    if rnd is not None and (not isinstance(rnd, int) or isinstance(rnd, bool) or not 0 <= rnd < 2**31):
        raise Invalid(f"{where}.round: expected a non-negative integer, got {rnd!r}")
    for key in ("image_uid", "candidate_a", "candidate_b"):
        value = meta.get(key)
        if value is None:
            continue
        is_id = isinstance(value, str | int) and not isinstance(value, bool)
        if not is_id or not 0 < len(str(value)) <= 256:
            raise Invalid(f"{where}.{key}: expected a string or integer id of 1-256 characters")
    return {**meta, "kind": kind}


def _candidate(c: CandidateIn, where: str, can_render: bool) -> tuple[bytes | None, list[float] | None]:
    if c.params is not None:
        if len(c.params) != N_PARAMS:
            raise Invalid(f"{where}.params: expected {N_PARAMS} floats, got {len(c.params)}")
        low = [k for k, p in enumerate(c.params) if not (0.0 if k < N_BLENDSHAPES else -1.0) <= p <= 1.0]
        if low:
            raise Invalid(f"{where}.params[{low[0]}]: expected blendshapes in [0, 1] and pose channels in "
                          f"[-1, 1], got {c.params[low[0]]}")
    if c.png is None:
        if c.params is None:
            raise Invalid(f"{where}: expected {{png: base64}} or {{params: [{N_PARAMS} floats]}}")
        if not can_render:
            raise Invalid(f"{where}: expected {{png: base64}} "
                          "(this app does not render params-only candidates)")
        return None, c.params
    return decode_png(c.png, f"{where}.png"), c.params


def to_new_tasks(tasks: list[TaskIn], render: Callable[[list[list[float]]], list[bytes]] | None = None,
                 first_index: int = 0) -> list[NewTask]:
    """Check every task, then render the params-only candidates (with ``render``; None refuses them)."""
    checked = []
    for offset, task in enumerate(tasks):
        where = f"tasks[{first_index + offset}]"
        try:
            a = _candidate(task.candidate_a, f"{where}.candidate_a", render is not None)
            b = _candidate(task.candidate_b, f"{where}.candidate_b", render is not None)
            checked.append((task, decode_png(task.image, f"{where}.image"), a, b,
                            check_meta(task.meta, f"{where}.meta")))
        except Invalid as exc:
            exc.index = first_index + offset  # lets the file loader name the line
            raise
    todo = [params for _, _, *cands, _ in checked for png, params in cands if png is None]
    rendered = iter(render(todo) if todo else [])
    out = []
    for task, image, (a_png, a_params), (b_png, b_params), meta in checked:
        out.append(NewTask(region=task.region, image_png=image, a_png=a_png or next(rendered),
                           b_png=b_png or next(rendered), meta=meta, a_params=a_params, b_params=b_params))
    return out


def to_new_task(task: TaskIn, index: int, render=None) -> NewTask:
    return to_new_tasks([task], render, index)[0]
