"""The ML backend's logic as a plain object: setup, predict, train, webhook.

The Flask layer (``app.py``) only decodes JSON and calls these methods, so everything here can be
tested without a server. One ``ProjectModel`` per Label Studio project holds the fitted predictor;
its inputs are persisted by ``StateStore`` and it is rebuilt from them after a restart.

Which Label Studio a project's data comes from, and where the token goes (README, "Security"):
with ``LABEL_STUDIO_URL`` set, always there (with ``LABEL_STUDIO_API_KEY``, or the token Label
Studio sent to /setup); without it, to the ``hostname`` of the project's first /setup, with that
same request's ``access_token``, and a /setup naming another host is refused. The configured key
is never sent anywhere but ``LABEL_STUDIO_URL``. Only projects that Label Studio has set up (or
that have saved state) are trained, so unauthenticated webhooks cannot make work for others.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ConfigError, ImageReadError, LabelStudioError, RequestError, TaskImageError
from ..evaluation.learning_curve import held_out_quality
from ..features.extractor import FeatureExtractor
from ..features.rows import GrowingRows
from ..labelstudio import rate_next
from ..labelstudio.aggregation import RatingStats, TaskReader, aggregate_ratings
from ..labelstudio.client import LabelStudioClient
from ..labelstudio.label_config import ScoreTag, parse_label_config
from ..labelstudio.task_images import resolve_task_image
from ..labelstudio.webhooks import REFRESH_ACTIONS, WebhookEvent, parse_webhook
from ..prediction import PREDICTORS
from ..prediction.base import Predictor
from ..ratings import SCREENINGS
from ..ratings.subject_model import Z95
from ..ratings.weights import label_weights, pooled_variance
from .protocol import empty_prediction, parse_predict, parse_setup, prediction
from .state import UNTRAINED, ProjectState, StateStore
from .trainer import TrainingQueue
from .webhook_auth import WebhookSigner

log = logging.getLogger(__name__)


@dataclass
class ProjectModel:
    state: ProjectState
    predictor: Predictor | None = None  # fitted, None until the first label


@dataclass
class TaskFeatures:
    matrix: np.ndarray  # one row per readable task image
    ok: list[int]  # index (in the request) of each row
    paths: list[Path]  # image file of each row
    errors: dict[int, str]  # index -> why its image could not be used


@dataclass
class LabelledRows:
    """The labelled images' features as the last retrain read them, in label order: the labels
    tried (``ids``, with their image references), the rows that could be read (``rows``, of the
    tasks ``row_ids``, files ``paths``), and the full export they came from (``synced``)."""

    synced: float
    ids: list[str]
    references: list[str]
    rows: GrowingRows
    row_ids: list[str]
    paths: list[Path]


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str


#: A START_TRAINING this soon after an annotation webhook of the project is Label Studio's "train
#: on submission" echo of that annotation: the annotation's own retrain covers it.
SUBMIT_ECHO_S = 5.0
#: Labels of the plain fit that estimates the model's own error for the weights (multi-rater
#: projects only): the exact leave-one-out path, bounded in cost.
WEIGHT_SAMPLE = 1000
#: Tasks from which storing up to ``client.SINGLE_PREDICTIONS`` predictions one by one is cheaper for
#: Label Studio than one import request (docs/performance.md).
BIG_PROJECT = 1000
#: Tasks at the head of the stream whose stored suggestion each retrain refreshes while the full
#: store waits for its pause: Label Studio hands out the first unlocked of the lowest scores (one of
#: the first raters + 1 with several raters), so this covers four raters at once.
FRONT = 5
#: Lowest-score tasks of a store remembered for those refreshes (rated ones drop out).
FRONT_KEPT = 100
#: Hosts remembered per project for signing its webhooks (a /setup's Host header is the client's to
#: choose: bounded).
MAX_HOSTS = 8


class MOSService:
    #: Unknown project ids whose webhooks are logged (once each); beyond, they are ignored silently.
    MAX_LOGGED_UNKNOWN = 1000

    def __init__(
        self,
        config: Config,
        extractor: FeatureExtractor | None = None,
        client_factory: Callable[[str, str], LabelStudioClient] = LabelStudioClient,
    ) -> None:
        if config.label_studio_api_key and not config.label_studio_url:
            raise ConfigError("LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL is not: the backend sends its "
                              "token only to LABEL_STUDIO_URL, so set both (or neither)")
        SCREENINGS.get(config.screening)  # MOS_SCREENING: an unknown method fails here, with the choices
        self.config = config
        self._extractor = extractor
        self._extractor_lock = threading.Lock()
        self._client_factory = client_factory
        self.store = StateStore(config.state_dir)
        self._models: dict[int, ProjectModel] = {}
        self._models_lock = threading.Lock()
        self._tokens: dict[int, str] = {}  # project -> the access_token its /setup sent
        self._caught_up: set[int] = set()
        self._unknown_logged: set[int] = set()
        self._published: dict[int, dict[str, Any]] = {}  # project -> what the last publish did
        #: project -> (version of its last store, [(queue score, task id)] lowest first, task id -> prediction id)
        self._front: dict[int, tuple[str, list[tuple[float, int]], dict[int, int]]] = {}
        self._quality: dict[int, dict[str, Any] | None] = {}  # project -> leave-one-out agreement
        self._train_lock = threading.Lock()
        # What the last retrain read from Label Studio, and what webhooks said changed since.
        self._cache_lock = threading.Lock()
        #: project -> (tasks by id, label config, monotonic time of the last full export)
        self._task_cache: dict[int, tuple[dict[int, dict[str, Any]], str, float]] = {}
        #: project -> task id -> the annotations a signed webhook brought (applied as they are),
        #: or None (the task is fetched)
        self._changed: dict[int, dict[int, list[dict[str, Any]] | None]] = {}
        self._stale: set[int] = set()
        self._last_annotation: dict[int, float] = {}  # project -> monotonic time of its last annotation webhook
        self._labelled: dict[int, LabelledRows] = {}  # project -> its labels' features (the trainer's own)
        self._readers: dict[int, TaskReader] = {}  # project -> its tasks' votes as last read (the trainer's own)
        self.signer = WebhookSigner(config.state_dir)
        self._hosts: dict[int, set[str]] = {}  # project -> host:port its /setup requests were sent to
        self._signed: set[int] = set()  # projects whose webhooks were signed for all of their hosts
        self._last_read: dict[int, str] = {}  # project -> how its last retrain read Label Studio (for the log)
        self.trainer = TrainingQueue(self.train)
        # Storing a model's predictions in Label Studio takes seconds of its API; it runs in its
        # own thread, for the newest model of the project, so the next rating's retrain never
        # waits for it (repeated requests merge: a version already replaced is not stored).
        self.publisher = TrainingQueue(self._publish_current, name="mos-publisher", pause=config.publish_pause)
        # While that store waits for its pause, the suggestions the next raters will see are
        # rewritten with the newest model (suggest mode; ``_refresh_front``).
        self.refresher = TrainingQueue(self._refresh_front, name="mos-refresher")

    def start(self) -> None:
        """Start training, and catch up every saved project with Label Studio (annotations made
        while the backend was down) where the settings say how to reach it."""
        self.trainer.start()
        self.publisher.start()
        self.refresher.start()
        # Let a running retrain or publish finish before the interpreter exits: torch's thread
        # pools torn down under a thread still inside them abort the process.
        atexit.register(self.stop)
        if self.config.label_studio_url and self.config.label_studio_api_key:
            for project_id in self.store.project_ids():
                self._catch_up(project_id)

    def stop(self) -> None:
        """Stop the retrain and publish threads, waiting a few seconds for their current job."""
        self.trainer.stop()
        self.publisher.stop()
        self.refresher.stop()

    # --- resources -------------------------------------------------------------------------
    @property
    def extractor(self) -> FeatureExtractor:
        """Built on first use: loading the network takes seconds and /setup must stay fast."""
        if self._extractor is not None:  # hot path of every request: no lock once built
            return self._extractor
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = FeatureExtractor.from_config(self.config)
            return self._extractor

    def model(self, project_id: int, create: bool = True) -> ProjectModel | None:
        """The project's model, loaded from its saved state on first use; without ``create``,
        None for a project that was never set up (nothing is kept for it)."""
        with self._models_lock:
            model = self._models.get(project_id)
            if model is None:
                model = self._load(project_id, create)
                if model is None:
                    return None
                self._models[project_id] = model
        self._catch_up(project_id)
        return model

    def _load(self, project_id: int, create: bool) -> ProjectModel | None:
        state = self.store.load(project_id)
        if state is None:
            if not create:
                return None
            name = self.config.predictor
            return ProjectModel(ProjectState(project_id, predictor=name,
                                             predictor_params=self.config.params_for(name)))
        try:
            PREDICTORS.create(state.predictor, state.predictor_params)
        except ConfigError as exc:
            log.error("project %s: saved predictor settings are unusable (%s): back to the defaults", project_id, exc)
            name = self.config.predictor
            state.predictor, state.predictor_params = name, self.config.params_for(name)
        predictor = self._fit(state, state.labels) if state.labels else None
        log.info("project %s: reloaded %s labels, model version %s", project_id, len(state.labels),
                 state.model_version)
        return ProjectModel(state, predictor)

    def _known(self, project_id: int) -> bool:
        with self._models_lock:
            if project_id in self._models:
                return True
        return self.store.path(project_id).exists()

    def _features(self, references: list[str]) -> TaskFeatures:
        """Features of task images, skipping (and explaining) the ones that cannot be read.

        Cached images cost a ``stat`` each (see ``FeatureExtractor.extract_one``).
        """
        rows, ok, paths, errors = [], [], [], {}
        for index, reference in enumerate(references):
            try:
                path = resolve_task_image(reference, self.config.document_root)
                rows.append(self.extractor.extract_one(path, as_stored=True))
                ok.append(index)
                paths.append(path)
            except (TaskImageError, ImageReadError) as exc:
                errors[index] = str(exc)
        matrix = np.vstack(rows).astype(np.float32, copy=False) if rows else np.empty((0, 0), dtype=np.float32)
        return TaskFeatures(matrix, ok, paths, errors)

    def _fit(self, state: ProjectState, labels: dict[str, dict[str, Any]],
             previous: Predictor | None = None) -> Predictor | None:
        """A predictor fitted on ``labels``; ``previous`` is the project's current one, whose
        warm state the new fit takes over (see ``RidgePredictor``)."""
        rows = self._labelled_rows(state.project_id, labels)
        if not rows.row_ids:
            return None
        targets = np.array([labels[t]["mos"] for t in rows.row_ids], dtype=np.float64)
        weights = self._weights(state, [labels[t] for t in rows.row_ids], rows.rows.array, targets)
        predictor = PREDICTORS.create(state.predictor, state.predictor_params)
        predictor.fit(rows.rows.array, targets, images=rows.paths, row_ids=rows.row_ids,
                      warm_state=previous.warm_state_ if previous is not None else None,
                      sample_weight=weights)
        self._quality[state.project_id] = held_out_quality(predictor, targets)
        return predictor

    def _labelled_rows(self, project_id: int, labels: dict[str, dict[str, Any]]) -> LabelledRows:
        """The features of the labelled images, in label order. Labels that the previous retrain
        read, in the same order and with the same image references, keep their rows (an image
        file replaced in place is read again at the next full export); only the rest are looked
        up and appended. Unreadable images are skipped and logged once."""
        ids = list(labels)
        references = [labels[t]["image"] for t in ids]
        with self._cache_lock:
            cached = self._task_cache.get(project_id)
        synced = cached[2] if cached is not None else 0.0
        old = self._labelled.get(project_id)
        start = len(old.ids) if old is not None else 0
        if (old is None or not old.row_ids or old.synced != synced or old.ids != ids[:start]
                or old.references != references[:start]):
            old, start = None, 0
        found = self._features(references[start:])
        for index, message in found.errors.items():
            log.warning("project %s: labelled task %s skipped: %s", project_id, ids[start + index], message)
        new_ids = [ids[start + i] for i in found.ok]
        if old is None:
            matrix = found.matrix if found.ok else np.empty((0, 0), dtype=np.float32)
            rows = LabelledRows(synced, ids, references, GrowingRows(matrix), new_ids, found.paths)
        else:
            grown = old.rows.appended(found.matrix) if found.ok else old.rows
            rows = LabelledRows(synced, ids, references, grown, old.row_ids + new_ids, old.paths + found.paths)
        self._labelled[project_id] = rows
        return rows

    def _weights(self, state: ProjectState, labels: list[dict[str, Any]], X: np.ndarray,
                 targets: np.ndarray) -> np.ndarray | None:
        """Per label, how sure its MOS is (``ratings.weights``, with MOS_CERTAINTY_WEIGHTS=on);
        None while every image has one rating. The model's own error comes from a plain fit on at
        most ``WEIGHT_SAMPLE`` labels."""
        variances = [label.get("var") for label in labels]
        n = np.array([label["n"] for label in labels])
        if self.config.certainty_weights == "off" or any(v is None for v in variances) or np.all(n == 1):
            return None
        rows = np.sort(np.random.default_rng(0).permutation(len(labels))[:WEIGHT_SAMPLE])
        plain = PREDICTORS.create(state.predictor, state.predictor_params).fit(X[rows], targets[rows])
        return label_weights(n, np.array(variances, dtype=float), getattr(plain, "loo_residuals_", None))

    # --- Label Studio connection -----------------------------------------------------------
    def _connect(self, model: ProjectModel, hostname: str, access_token: str) -> None:
        """Remember how to reach the project's Label Studio (see the module docstring)."""
        state = model.state
        if not self.config.label_studio_url:
            if not hostname:
                raise RequestError(f"project {state.project_id}: /setup has no 'hostname' and LABEL_STUDIO_URL "
                                   "is not set")
            if state.label_studio_url and hostname != state.label_studio_url:
                raise RequestError(f"project {state.project_id} belongs to the Label Studio at "
                                   f"{state.label_studio_url}, not {hostname}")
            if not state.label_studio_url:
                state.label_studio_url = hostname
                self.store.save(state)  # the pin survives a restart
        if access_token and not self.config.label_studio_api_key:
            self._tokens[state.project_id] = access_token

    def _connection(self, project_id: int, state: ProjectState) -> Connection | None:
        url = self.config.label_studio_url or state.label_studio_url
        key = self.config.label_studio_api_key or self._tokens.get(project_id, "")
        return Connection(url, key) if url and key else None

    def client(self, project_id: int) -> LabelStudioClient:
        model = self.model(project_id, create=False)
        connection = self._connection(project_id, model.state) if model is not None else None
        if connection is None:
            raise LabelStudioError(
                f"project {project_id}: no Label Studio URL/token yet; set LABEL_STUDIO_URL and "
                "LABEL_STUDIO_API_KEY, or wait for Label Studio's /setup call"
            )
        return self._client_factory(connection.url, connection.api_key)

    def _catch_up(self, project_id: int) -> None:
        """Once per project and process: a retrain that finds annotations made while the backend
        was not listening (it keeps the model when there are none)."""
        if project_id in self._caught_up:
            return
        with self._models_lock:
            model = self._models.get(project_id)
        state = model.state if model is not None else self.store.load(project_id)
        if state is None or self._connection(project_id, state) is None:
            return
        self._caught_up.add(project_id)
        self.trainer.request(project_id, force=False)

    # --- protocol --------------------------------------------------------------------------
    def setup(self, payload: Any, host: str = "") -> dict[str, Any]:
        """``host``: the host:port the request was sent to, how Label Studio reaches this backend
        (the webhooks to sign are those pointing there)."""
        request = parse_setup(payload)
        wanted = self._predictor_settings(request.extra_params)
        model = self.model(request.project_id)
        assert model is not None
        self._connect(model, request.hostname, request.access_token)
        if host:
            with self._cache_lock:
                hosts = self._hosts.setdefault(request.project_id, set())
                if host not in hosts and len(hosts) < MAX_HOSTS:
                    hosts.add(host)
                    self._signed.discard(request.project_id)
        self._apply_predictor(model, *wanted)
        self._catch_up(request.project_id)
        return {"model_version": model.state.model_version}

    def _predictor_settings(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Per-project predictor settings: environment defaults overridden by extra_params, every
        value checked (400 with one line) before anything is stored."""
        params = dict(extra)
        name = str(params.pop("predictor", self.config.predictor))
        wanted = {**self.config.params_for(name), **params}
        try:
            PREDICTORS.create(name, wanted)
        except ConfigError as exc:
            raise RequestError(f"extra_params: {exc}") from None
        return name, wanted

    def _apply_predictor(self, model: ProjectModel, name: str, wanted: dict[str, Any]) -> None:
        """A change (including removing extra_params again) retrains the project."""
        state = model.state
        if (name, wanted) != (state.predictor, state.predictor_params):
            state.predictor, state.predictor_params = name, wanted
            log.info("project %s: predictor set to %s %s", state.project_id, name, wanted)
            if state.labels:
                self.trainer.request(state.project_id)

    def predict(self, payload: Any) -> dict[str, Any]:
        request = parse_predict(payload)
        model = self.model(request.project_id, create=False)
        if model is None or model.predictor is None:
            version = model.state.model_version if model is not None else UNTRAINED
            return {"results": [], "model_version": version}
        predictor, version = model.predictor, model.state.model_version
        found = self._features(request.references())
        for index, message in found.errors.items():
            log.warning("project %s: task %s: %s", request.project_id, request.tasks[index].get("id"), message)
        results = [empty_prediction(version) for _ in request.tasks]
        if found.ok:
            values, confidence = predictor.predict_with_confidence(found.matrix, images=found.paths)
            for row, index in enumerate(found.ok):
                results[index] = prediction(request.tag, float(values[row]), float(confidence[row]), version)
        return {"results": results, "model_version": version}

    def webhook(self, payload: Any, token: str | None = None) -> dict[str, Any]:
        """Queue a retrain and wait for it up to ``MOS_WEBHOOK_WAIT`` seconds: Label Studio sends
        the webhook inside the rater's submit, so when the retrain (and the stored predictions)
        finish within it, the next image already shows the model that knows this rating.
        ``token``: the request's ``WEBHOOK_HEADER``; with this project's, the annotation in the
        payload is applied as it is (``webhook_auth``), else its task is fetched."""
        event = parse_webhook(payload)
        if event.project_id is not None and self._known(event.project_id):
            with self._cache_lock:
                if event.task_id is not None:
                    changed = self._changed.setdefault(event.project_id, {})
                    pushed = changed.get(event.task_id, [])
                    if (event.annotation is not None and pushed is not None
                            and self.signer.verifies(event.project_id, token)):
                        changed[event.task_id] = [*pushed, event.annotation]
                    else:
                        changed[event.task_id] = None
                    self._last_annotation[event.project_id] = time.monotonic()
                elif event.action in REFRESH_ACTIONS and not self._same_config(event):
                    self._stale.add(event.project_id)
                elif event.action == "START_TRAINING" and (
                        time.monotonic() - self._last_annotation.get(event.project_id, -1e9) < SUBMIT_ECHO_S):
                    # "train on submission" sends this beside each annotation's own webhook
                    return {"status": "merged", "action": event.action, "project": event.project_id}
        if not event.triggers_training:
            level = logging.INFO if event.known else logging.WARNING
            log.log(level, "webhook %s ignored", event.action)
            return {"status": "ignored", "action": event.action}
        assert event.project_id is not None
        if not self._known(event.project_id):
            if len(self._unknown_logged) < self.MAX_LOGGED_UNKNOWN and event.project_id not in self._unknown_logged:
                self._unknown_logged.add(event.project_id)
                log.warning("webhook %s for project %s ignored: Label Studio never set this project up here",
                            event.action, event.project_id)
            return {"status": "ignored", "action": event.action, "reason": "unknown project"}
        queued = self.trainer.request(event.project_id)
        log.info("webhook %s: retrain of project %s %s", event.action, event.project_id,
                 "queued" if queued else "already queued")
        # the retrain, and the storing of its predictions unless MOS_PUBLISH_PAUSE holds that back
        # (then the refresh of the suggestions at the head of the stream)
        deadline = time.monotonic() + self.config.webhook_wait
        done = self.config.webhook_wait > 0 and self.trainer.wait_idle(self.config.webhook_wait) and \
            self.publisher.wait_idle(max(0.0, deadline - time.monotonic()), due_only=True) and \
            self.refresher.wait_idle(max(0.0, deadline - time.monotonic()))
        return {"status": "trained" if done else "queued", "action": event.action, "project": event.project_id}

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in all for the retrains and then their publishing."""
        deadline = time.monotonic() + timeout
        return (self.trainer.wait_idle(timeout) and self.publisher.wait_idle(max(0.0, deadline - time.monotonic()))
                and self.refresher.wait_idle(max(0.0, deadline - time.monotonic())))

    def status(self) -> dict[str, Any]:
        """What each loaded project's model knows, whether a retrain is running, and the last
        error of a project whose retrains fail (retried with backoff)."""
        failures = self.trainer.failures()
        now = time.monotonic()
        with self._models_lock:
            projects = {
                str(pid): {
                    "model_version": m.state.model_version,
                    "n_labels": len(m.state.labels),
                    "predictor": m.state.predictor,
                    "predictor_params": m.state.predictor_params,
                    "trained_at": m.state.trained_at,
                    "train_ms": m.state.train_ms,
                    "published": self._published.get(pid),
                    "held_out": self._quality.get(pid),
                    "last_error": None if pid not in failures else {
                        "error": failures[pid].error, "since": failures[pid].since,
                        "attempts": failures[pid].attempts,
                        "retry_in_s": round(max(0.0, failures[pid].retry_at - now), 1),
                    },
                }
                for pid, m in self._models.items()
            }
        busy = not (self.trainer.wait_idle(0) and self.publisher.wait_idle(0) and self.refresher.wait_idle(0))
        return {"training": busy, "projects": projects}

    def versions(self) -> dict[str, Any]:
        with self._models_lock:
            versions = sorted({m.state.model_version for m in self._models.values()})
        return {"versions": versions or [UNTRAINED]}

    # --- training --------------------------------------------------------------------------
    def train(self, project_id: int, force: bool = True) -> ProjectState:
        """Fetch every annotation of the project, refit, bump the version, persist, swap in.

        ``force=False`` (a catch-up) keeps the current model when Label Studio has nothing new.
        """
        with self._train_lock:  # the trainer's thread, and direct calls (tests, tools), one at a time
            return self._train(project_id, force)

    def _train(self, project_id: int, force: bool) -> ProjectState:
        started = time.perf_counter()
        self._caught_up.add(project_id)  # this retrain is the catch-up
        client = self.client(project_id)
        tasks, label_config = self._project_tasks(client, project_id, incremental=force)
        self._sign(client, project_id)
        tag = parse_label_config(label_config)
        fetched = time.perf_counter()
        reader = self._readers.get(project_id)
        if reader is None or reader.tag != tag:
            reader = self._readers[project_id] = TaskReader(tag)
        stats = aggregate_ratings(tasks, tag, self.config.screening, reader=reader)  # the MOS the export writes
        by_id = {task["id"]: task for task in tasks}
        variance = _mos_variances(stats)
        fresh = {
            str(task_id): {
                "image": _reference(by_id[task_id], tag.data_key),
                "mos": s.mean,
                "n": s.n,
                "var": variance.get(task_id),
            }
            for task_id, s in stats.items()
        }
        current_model = self.model(project_id)
        assert current_model is not None
        current = current_model.state
        # the labels the model knows in the order it learnt them, new ones at the end: the next fit
        # then only appends rows (see ``_labelled_rows``)
        labels = {t: fresh[t] for t in current.labels if t in fresh}
        labels.update(fresh)
        if not force and labels == current.labels and label_config == current.label_config:
            log.info("project %s: up to date with Label Studio (%d labels)", project_id, len(labels))
            return current
        state = ProjectState(
            project_id=project_id,
            version=current.version + 1,
            predictor=current.predictor,
            predictor_params=current.predictor_params,
            labels=labels,
            label_config=label_config,
            label_studio_url=current.label_studio_url,
        )
        predictor = self._fit(state, labels, current_model.predictor) if labels else None
        state.model_version = f"{state.predictor}-v{state.version}" if predictor else UNTRAINED
        state.trained_at = time.time()
        state.train_ms = round((time.perf_counter() - fetched) * 1000, 1)
        self.store.save(state)
        with self._models_lock:
            self._models[project_id] = ProjectModel(state, predictor)
        quality = self._quality.get(project_id) if predictor is not None else None
        log.info(
            "project %s: retrained on %d labels in %.0f ms (fetch %.0f ms: %s), model version %s%s",
            project_id,
            len(labels),
            state.train_ms,
            (fetched - started) * 1000,
            self._last_read.get(project_id, ""),
            state.model_version,
            f"; each rating predicted without it: SRCC {quality['srcc']:.3f}, RMSE {quality['rmse']:.2f} "
            f"(n={quality['n']})" if quality else "",
        )
        if predictor is not None and self.config.publish == "on":
            self.publisher.request(project_id)
            if tag.suggestion:
                self.refresher.request(project_id)
        return state

    def _publish_current(self, project_id: int, force: bool = True) -> None:
        """Publish the project's current model (``publisher``'s job) on the tasks it was
        trained with."""
        model = self.model(project_id, create=False)
        with self._cache_lock:
            cached = self._task_cache.get(project_id)
        if model is None or model.predictor is None or cached is None:
            return
        self._publish(self.client(project_id), list(cached[0].values()), parse_label_config(model.state.label_config),
                      model.state, model.predictor)

    def _refresh_front(self, project_id: int, force: bool = True) -> None:
        """While the project's next store waits (for ``MOS_PUBLISH_PAUSE`` on big projects, or for
        the store in progress), rewrite the stored suggestions of the ``FRONT`` unrated tasks the
        stream hands out next with the current model, in place: Label Studio asks /predict only for
        tasks without a prediction of the project's model version, so the rater would otherwise see
        the stored model's value. Their queue scores (the order) and model version stay the
        store's until the next store."""
        model = self.model(project_id, create=False)
        with self._cache_lock:
            front = self._front.get(project_id)
            cached = self._task_cache.get(project_id)
        if (model is None or model.predictor is None or front is None or cached is None
                or front[0] == model.state.model_version or not self.publisher.waiting(project_id)):
            return
        stored_version, queue, prediction_ids = front
        head = [(score, task_id) for score, task_id in queue
                if str(task_id) not in model.state.labels and task_id in cached[0]][:FRONT]
        tag = parse_label_config(model.state.label_config)
        found = self._features([_reference(cached[0][task_id], tag.data_key) for _, task_id in head])
        if not found.ok:
            return
        values, confidence = model.predictor.predict_with_confidence(found.matrix, images=found.paths)
        client = self.client(project_id)
        updated = 0
        try:
            for row, index in enumerate(found.ok):
                score, task_id = head[index]
                if task_id not in prediction_ids:
                    ids = [p["id"] for p in client.task_predictions(task_id)
                           if p.get("model_version") == stored_version]
                    if not ids:
                        continue
                    prediction_ids[task_id] = ids[0]
                result = tag.prediction_result(float(values[row]), float(confidence[row]), model.state.model_version)
                client.update_prediction(prediction_ids[task_id], result, score)
                updated += 1
        except LabelStudioError as exc:
            log.warning("project %s: suggestions at the head of the stream not refreshed: %s", project_id, exc)
            return
        log.info("project %s: %d suggestions at the head of the stream now from %s (stored: %s)", project_id,
                 updated, model.state.model_version, stored_version)

    def _same_config(self, event: WebhookEvent) -> bool:
        """A PROJECT_UPDATED that leaves the label config as the last retrain read it: Label
        Studio sends one for every project update, the backend's own setting of the model version
        after each retrain included, and reading the whole project again for those would undo
        the one-task retrain. (A forged one can only delay a refresh until ``MOS_RESYNC_S``.)"""
        cached = self._task_cache.get(event.project_id) if event.project_id is not None else None
        return (event.action == "PROJECT_UPDATED" and event.label_config is not None and cached is not None
                and event.label_config == cached[1])

    def _project_tasks(self, client: LabelStudioClient, project_id: int,
                       incremental: bool) -> tuple[list[dict[str, Any]], str]:
        """Every task of the project with its annotations, and its label config.

        The full export (seconds for thousands of tasks) runs the first time, for a catch-up or
        Start Training, and after task, config or deletion events; otherwise the copy from the
        last retrain is used with only the tasks that annotation webhooks named fetched again
        (one request each), so a retrain after a rating takes a fraction of a second; a full
        export again once the copy is ``MOS_RESYNC_S`` old, for what no webhook said. A task id
        from a webhook counts only if Label Studio says the task is in this project."""
        with self._cache_lock:
            changed = self._changed.pop(project_id, {})
            stale = project_id in self._stale
            self._stale.discard(project_id)
            cached = self._task_cache.get(project_id)
        try:
            fresh = cached is not None and (self.config.resync_s <= 0
                                            or time.monotonic() - cached[2] < self.config.resync_s)
            if (incremental and cached is not None and fresh and changed and not stale
                    and changed.keys() <= cached[0].keys()):
                by_id, label_config, synced = dict(cached[0]), cached[1], cached[2]
                signed = sum(pushed is not None for pushed in changed.values())
                self._last_read[project_id] = f"{signed} from signed webhooks, {len(changed) - signed} fetched"
                for task_id, pushed in sorted(changed.items()):
                    if pushed is not None:  # from a signed webhook: Label Studio's own word
                        by_id[task_id] = _with_annotations(by_id[task_id], pushed)
                        continue
                    task = client.task(task_id)
                    if task.get("project") != project_id or task.get("id") != task_id:
                        log.warning("project %s: webhook named task %s of another project: ignored", project_id,
                                    task_id)
                        continue
                    by_id[task_id] = task
            else:
                synced = time.monotonic()
                label_config = client.get_label_config(project_id)
                by_id = {task["id"]: task for task in client.export_tasks(project_id)}
                self._last_read[project_id] = f"full export of {len(by_id)} tasks"
        except Exception:
            with self._cache_lock:
                self._stale.add(project_id)  # the retry reads everything again
            raise
        with self._cache_lock:
            self._task_cache[project_id] = (by_id, label_config, synced)
        return list(by_id.values()), label_config

    def _sign(self, client: LabelStudioClient, project_id: int) -> None:
        """Sign the project's webhooks to this backend (``webhook_auth``), once per new host."""
        with self._cache_lock:
            hosts = set(self._hosts.get(project_id, ()))
            if not hosts or project_id in self._signed:
                return
            self._signed.add(project_id)
        if self.signer.sign(client, project_id, hosts):
            log.info("project %s: its webhooks to this backend now carry their token: ratings are applied "
                     "from them without fetching the task", project_id)

    def _publish(self, client: LabelStudioClient, tasks: list[dict[str, Any]], tag: ScoreTag, state: ProjectState,
                 predictor: Predictor) -> None:
        """Store the new model's prediction for every unrated task in Label Studio, make it the
        project's model version and delete this backend's older versions but the one it replaces:
        the stream, the Data Manager's columns and its sorting then show the current model without
        asking /predict (which Label Studio does once per task and version, and not at all after an
        empty answer). The replaced version stays until the next store because a rater may have one
        of its predictions open: Label Studio refuses a submit whose prediction was deleted (400
        "parent_prediction ... does not exist"), and the rating would be lost.
        A failure is logged and shown under /status; the next retrain publishes again."""
        started = time.perf_counter()
        project_id, version = state.project_id, state.model_version
        unrated = [task for task in tasks if str(task.get("id")) not in state.labels]
        found = self._features([_reference(task, tag.data_key) for task in unrated])
        stored = []
        if found.ok:
            values, confidence = predictor.predict_with_confidence(found.matrix, images=found.paths)
            stored = [{"task": unrated[index]["id"], **prediction(tag, float(values[row]), float(confidence[row]),
                                                                  version)}
                      for row, index in enumerate(found.ok)]
            _order_for_the_stream(stored, [unrated[index] for index in found.ok])
        replaced = (self._published.get(project_id) or {}).get("model_version")
        try:
            if stored:  # Label Studio refuses a model version that no prediction carries
                # one request per prediction costs less than one import request on a big project only
                client.import_predictions(project_id, stored, one_by_one=len(tasks) >= BIG_PROJECT)
                client.set_model_version(project_id, version)
            old = [v for v in client.model_versions(project_id) if v not in (version, replaced) and _is_ours(v)]
            for previous in old:
                client.delete_model_version(project_id, previous)
        except LabelStudioError as exc:
            log.warning("project %s: predictions of %s not stored in Label Studio: %s", project_id, version, exc)
            self._published[project_id] = {"model_version": version, "error": str(exc)}
            return
        elapsed = round((time.perf_counter() - started) * 1000)
        self._published[project_id] = {"model_version": version, "tasks": len(stored), "ms": elapsed,
                                       "unreadable": len(found.errors)}
        with self._cache_lock:
            queue = sorted((item["score"], item["task"]) for item in stored)[:FRONT_KEPT]
            self._front[project_id] = (version, queue, {})
        log.info("project %s: stored %d predictions of %s in Label Studio in %d ms (%d older versions deleted)",
                 project_id, len(stored), version, elapsed, len(old))


def _with_annotations(task: dict[str, Any], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """``task`` with each of ``annotations`` replacing the one with its id, or added."""
    merged = {a.get("id"): a for a in task.get("annotations") or []}
    for annotation in annotations:
        merged[annotation["id"]] = annotation
    return {**task, "annotations": list(merged.values())}


def _mos_variances(stats: dict[int, RatingStats]) -> dict[int, float]:
    """task id -> the variance of its MOS: the subject model's interval for ``mle``, else one
    rating's pooled variance over the raters' count; empty while no image has two ratings."""
    ids = list(stats)
    pooled = pooled_variance(np.array([stats[t].n for t in ids]),
                             np.array([np.nan if stats[t].std is None else stats[t].std for t in ids]))
    if pooled is None:
        return {}
    return {t: (stats[t].ci95 / Z95) ** 2 if stats[t].method == "mle" and stats[t].ci95 else pooled / stats[t].n
            for t in ids}


def _order_for_the_stream(stored: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> None:
    """Scores that make Label Studio's uncertainty sampling hand out the unrated representatives
    first (in seed order, i.e. task id), then the least confident, the marked near-duplicates last
    (see ``labelstudio.rate_next``)."""
    first = sorted((task["id"], i) for i, task in enumerate(tasks)
                   if isinstance(task.get("data"), dict) and task["data"].get("representative") == 1)
    for (_, i), score in zip(first, rate_next.representative_scores(len(first)), strict=True):
        stored[i]["score"] = score
    chosen = {i for _, i in first}
    for i, item in enumerate(stored):
        if i not in chosen:
            data = tasks[i].get("data")
            duplicate = isinstance(data, dict) and bool(data.get(rate_next.DUPLICATE_KEY))
            item["score"] = rate_next.queue_score(item["score"], duplicate)


def _is_ours(version: str) -> bool:
    """A model version this backend (or the seed) names: ``<predictor>-v<n>``, untrained, the
    seed's placeholders."""
    name, _, number = version.rpartition("-v")
    return version in (UNTRAINED, rate_next.SEED_VERSION) or (name in PREDICTORS.names() and number.isdigit())


def _reference(task: dict[str, Any], key: str) -> str:
    data = task.get("data")
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""
