"""The few Label Studio 1.23 calls the backend and the scripts need, through label-studio-sdk.

Every failure becomes a ``LabelStudioError`` with a one-line message (wrong token, server down,
missing project), so the scripts can print it and exit non-zero instead of dumping a traceback.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ..errors import LabelStudioError

T = TypeVar("T")

ML_BACKEND_TITLE = "MOS Annotator"
#: Retrieve-predictions requests are synchronous with a 100 s budget on the LS side: keep them small.
PREDICTION_BATCH = 200
#: Predictions per import request: on a big project Label Studio's import has a fixed cost per
#: request far above its cost per prediction (docs/performance.md), so few large requests.
IMPORT_BATCH = 10_000
#: Up to this many predictions are stored one request each (see ``import_predictions``).
SINGLE_PREDICTIONS = 20


def _detail(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "error"):
            if body.get(key):
                return json.dumps(body[key]) if not isinstance(body[key], str) else body[key]
        return json.dumps(body)[:300]
    return str(body)[:300]


def _translate(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def decorator(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def wrapper(self: LabelStudioClient, *args: Any, **kwargs: Any) -> T:
            try:
                return func(self, *args, **kwargs)
            except ApiError as exc:
                hint = " (check LABEL_STUDIO_API_KEY / --api-key)" if exc.status_code == 401 else ""
                raise LabelStudioError(
                    f"Label Studio at {self.url} refused to {what}: HTTP {exc.status_code} {_detail(exc)}{hint}"
                ) from None
            except httpx.HTTPError as exc:
                raise LabelStudioError(
                    f"cannot reach Label Studio at {self.url} to {what}: {exc} (is it running?)"
                ) from None

        return wrapper

    return decorator


class LabelStudioClient:
    def __init__(self, url: str, api_key: str, timeout: float = 120) -> None:
        if not url:
            raise LabelStudioError("no Label Studio URL: set LABEL_STUDIO_URL or pass --url")
        if not api_key:
            raise LabelStudioError("no Label Studio token: set LABEL_STUDIO_API_KEY or pass --api-key")
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._sdk: LabelStudio | None = None

    @property
    def sdk(self) -> LabelStudio:
        # Built lazily: the constructor itself calls Label Studio when the key is a JWT.
        if self._sdk is None:
            self._sdk = LabelStudio(base_url=self.url, api_key=self._api_key, timeout=self._timeout)
        return self._sdk

    def project_url(self, project_id: int) -> str:
        return f"{self.url}/projects/{project_id}/data"

    @_translate("check the token")
    def check(self) -> str:
        """The e-mail of the token's user; raises for a wrong token or a stopped server."""
        return str(self.sdk.users.whoami().email)

    @_translate("read the project")
    def get_project(self, project_id: int) -> Any:
        return self.sdk.projects.get(id=project_id)

    def get_label_config(self, project_id: int) -> str:
        return str(self.get_project(project_id).label_config)

    @_translate("list projects")
    def find_project(self, title: str) -> int | None:
        for project in self.sdk.projects.list(title=title, page_size=100):
            if project.title == title:
                return int(project.id)
        return None

    @_translate("create the project")
    def create_project(self, title: str, label_config: str, raters: int = 1) -> int:
        project = self.sdk.projects.create(
            title=title,
            label_config=label_config,
            description="Mean Opinion Score annotation (MOS Annotator)",
            maximum_annotations=raters,
            overlap_cohort_percentage=100,
            show_collab_predictions=True,
        )
        return int(project.id)

    def _update_project(self, project_id: int, **fields: Any) -> None:
        """PATCH the project. Label Studio 1.23 clears the project's model version on any update
        that does not name it, so the current one is sent along."""
        version = self.sdk.projects.get(id=project_id).model_version
        self.sdk.projects.update(id=project_id, **fields, **({"model_version": version} if version else {}))

    @_translate("update the project")
    def set_raters(self, project_id: int, raters: int) -> None:
        """How many people rate each image; the MOS is the mean over them."""
        self._update_project(project_id, maximum_annotations=raters, overlap_cohort_percentage=100)

    @_translate("set up local files storage")
    def ensure_local_storage(self, project_id: int, folder: Path) -> None:
        """Label Studio serves a local file only if a storage of the project covers its folder."""
        path = str(folder.resolve())
        if any(s.path == path for s in self.sdk.import_storage.local.list(project=project_id)):
            return
        self.sdk.import_storage.local.create(
            project=project_id, path=path, use_blob_urls=True, title=folder.name[:64] or "images"
        )

    @_translate("list tasks")
    def tasks(self, project_id: int) -> list[Any]:
        return list(self.sdk.tasks.list(project=project_id, page_size=500))

    def task_data(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(task.data or {}) for task in self.tasks(project_id)]

    @_translate("import tasks")
    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """One request, so task ids (and the label stream's order) follow the list order."""
        response = self.sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True)
        return [int(i) for i in (response.task_ids or [])]

    def task(self, task_id: int) -> dict[str, Any]:
        """One task with its full annotations (what the export holds for it), and its project."""
        return dict(self._raw("GET", f"api/tasks/{task_id}", f"read task {task_id}"))

    @_translate("export the project")
    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with full annotations (predictions there are ids only: use ``predictions``)."""
        chunks = self.sdk.projects.exports.download_sync(
            id=project_id, export_type="JSON", download_all_tasks=True
        )
        return json.loads(b"".join(chunks))

    @_translate("list predictions")
    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        return [
            {
                "id": p.id,
                "task": p.task,
                "result": p.result,
                "score": p.score,
                "model_version": p.model_version,
                "created_at": p.created_at.isoformat() if p.created_at else "",
            }
            for p in self.sdk.predictions.list(project=project_id)
        ]

    def user_emails(self) -> dict[int, str]:
        """User id -> e-mail of the organization's members (for the votes file and rater report)."""
        users = self._raw("GET", "api/users/", "list the users")
        return {int(u["id"]): str(u.get("email") or "") for u in users or [] if isinstance(u.get("id"), int)}

    @_translate("list ML backends")
    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return [{"id": b.id, "url": b.url, "title": b.title} for b in self.sdk.ml.list(project=project_id)]

    @_translate("connect the ML backend (Label Studio calls its /health and /setup; is it running "
                "and reachable from Label Studio?)")
    def add_ml_backend(self, project_id: int, url: str, basic_auth: tuple[str, str] | None = None) -> int:
        auth: dict[str, Any] = {}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0],
                    "basic_auth_pass": basic_auth[1]}
        backend = self.sdk.ml.create(
            url=url, project=project_id, title=ML_BACKEND_TITLE, is_interactive=False, **auth
        )
        return int(backend.id)

    @_translate("retrieve predictions from the ML backend")
    def retrieve_predictions(self, project_id: int, task_ids: list[int]) -> None:
        """Ask Label Studio to get predictions of the current model version for these tasks."""
        for start in range(0, len(task_ids), PREDICTION_BATCH):
            self.sdk.actions.create(
                id="retrieve_tasks_predictions",
                project=project_id,
                selected_items={"all": False, "included": task_ids[start:start + PREDICTION_BATCH]},
            )

    @_translate("import predictions")
    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]], one_by_one: bool = False) -> int:
        """Store ``{task, result, score, model_version}`` predictions, ``IMPORT_BATCH`` per request;
        with ``one_by_one``, up to ``SINGLE_PREDICTIONS`` one request each (on a big project that
        costs Label Studio less than one import request: docs/performance.md)."""
        if one_by_one and len(predictions) <= SINGLE_PREDICTIONS:
            for item in predictions:
                self._raw("POST", "api/predictions/", "store a prediction", item)
            return len(predictions)
        created = 0
        for start in range(0, len(predictions), IMPORT_BATCH):
            response = self.sdk.projects.import_predictions(id=project_id,
                                                            request=predictions[start:start + IMPORT_BATCH])
            created += int(getattr(response, "created", 0) or 0)
        return created

    def task_predictions(self, task_id: int) -> list[dict[str, Any]]:
        """Every prediction of one task (id, model_version, result, score)."""
        return list(self._raw("GET", "api/predictions/", "read a task's predictions", params={"task": task_id}) or [])

    def update_prediction(self, prediction_id: int, result: list[dict[str, Any]], score: float) -> None:
        """Replace a stored prediction's result and score (its task and model version stay)."""
        self._raw("PATCH", f"api/predictions/{prediction_id}/", "update a prediction",
                  {"result": result, "score": score})

    @_translate("set the project's model version")
    def set_model_version(self, project_id: int, version: str) -> None:
        """The version whose predictions the Data Manager columns and the labelling stream show."""
        self.sdk.projects.update(id=project_id, model_version=version)

    @_translate("set up labelling")
    def configure_labelling(self, project_id: int, show_predictions: bool) -> None:
        """One update with what the seed needs of the labelling side:

        - ``show_collab_predictions``: whether the labelling view pre-fills from the predictions
          (blind mode: no);
        - ``sampling``: the label stream hands out the lowest prediction ``score`` of the
          project's model version first (Label Studio 1.23 has this in the community edition's
          API, not in its UI; the stream ignores a Data Manager tab's order);
        - ``min_annotations_to_start_training``: the "Start model training on annotation
          submission" toggle on, so that it says what happens (the backend retrains on every
          annotation); Label Studio then also sends START_TRAINING with every annotation, which
          the backend folds into that retrain.
        """
        self._update_project(project_id, show_collab_predictions=show_predictions,
                             sampling="Uncertainty sampling", min_annotations_to_start_training=1)

    def ensure_view(self, project_id: int, title: str, ordering: list[str], hidden: list[str] | None = None) -> int:
        """A Data Manager tab ``title`` with ``ordering`` (one key: Label Studio 1.23 sorts by the
        first only) and ``hidden`` columns (e.g. "tasks:data.gold_min"); an existing tab of that
        title is kept."""
        for view in self._raw("GET", "api/dm/views/", "list Data Manager tabs", params={"project": project_id}):
            if (view.get("data") or {}).get("title") == title:
                return int(view["id"])
        data: dict[str, Any] = {"title": title, "ordering": ordering, "filters": {"conjunction": "and", "items": []}}
        if hidden:
            data["hiddenColumns"] = {"explore": hidden, "labeling": hidden}
        return int(self._raw("POST", "api/dm/views/", "create a Data Manager tab",
                             {"project": project_id, "data": data})["id"])

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        """The project's webhooks (id, url, headers, ...)."""
        return list(self._raw("GET", "api/webhooks/", "list the project's webhooks", params={"project": project_id})
                    or [])

    def set_webhook_headers(self, webhook_id: int, headers: dict[str, str]) -> None:
        self._raw("PATCH", f"api/webhooks/{webhook_id}/", "set a webhook's headers", {"headers": headers})

    def model_versions(self, project_id: int) -> dict[str, int]:
        """Model versions with predictions in the project, and how many each has."""
        return dict(self._raw("GET", f"api/projects/{project_id}/model-versions/", "list model versions"))

    def delete_model_version(self, project_id: int, version: str) -> None:
        """Delete every prediction of ``version``."""
        self._raw("DELETE", f"api/projects/{project_id}/model-versions/", "delete old predictions",
                  {"model_version": version})

    def _raw(self, method: str, path: str, what: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """An endpoint the SDK does not wrap; errors as ``LabelStudioError``."""
        try:
            response = self.sdk._client_wrapper.httpx_client.request(path, method=method, json=body, params=params)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} to {what}: {exc} "
                                   "(is it running?)") from None
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio at {self.url} refused to {what}: HTTP {response.status_code} "
                                   f"{response.text[:300]}")
        return response.json() if response.content else None
