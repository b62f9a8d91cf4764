"""Flask app factory speaking Label Studio's ML backend protocol; a thin layer over ``MOSService``."""
from __future__ import annotations

import hmac
import logging
from typing import Any, Callable

from flask import Flask, Response, jsonify, request

from .config import Config
from .service import MOSService, RequestError
from .webhooks import WebhookError

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/", "/health", "/webhook"})


def create_app(config: Config | None = None, service: MOSService | None = None) -> Flask:
    """Build the app; pass ``service`` to share one (and its training thread) with a caller."""
    config = config or Config.from_env()
    service = service or MOSService(config)
    service.trainer.start()
    app = Flask("ml_backend")
    app.extensions["mos_service"] = service

    if config.basic_auth_user and config.basic_auth_pass:
        @app.before_request
        def require_basic_auth() -> Response | None:
            # Label Studio 1.23 sends no credentials on event webhooks; a webhook only queues a
            # retrain that reads from Label Studio with the backend's own token. /health is public
            # for container health checks.
            if request.path in OPEN_PATHS:
                return None
            auth = request.authorization
            if (
                auth is None
                or auth.type != "basic"
                or not hmac.compare_digest(auth.username or "", config.basic_auth_user)
                or not hmac.compare_digest(auth.password or "", config.basic_auth_pass)
            ):
                return Response(
                    '{"error": "basic auth required"}',
                    401,
                    {"WWW-Authenticate": 'Basic realm="mos-annotator"'},
                    mimetype="application/json",
                )
            return None

    def json_body() -> Any:
        body = request.get_json(silent=True)
        if body is None:
            raise RequestError(f"{request.path}: body is not JSON")
        return body

    def handle(action: Callable[[Any], dict[str, Any]]) -> tuple[Response, int]:
        try:
            return jsonify(action(json_body())), 200
        except (RequestError, WebhookError) as exc:
            log.warning("%s rejected: %s", request.path, exc)
            return jsonify({"error": str(exc)}), 400

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": "MOSModel"})

    @app.post("/setup")
    def setup() -> tuple[Response, int]:
        return handle(service.setup)

    @app.post("/predict")
    def predict() -> tuple[Response, int]:
        return handle(service.predict)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        return handle(service.webhook)

    @app.get("/status")
    def status() -> Response:
        return jsonify(service.status())

    @app.get("/versions")
    def versions() -> Response:
        return jsonify(service.versions())

    return app
