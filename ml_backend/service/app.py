"""Flask app factory speaking Label Studio's ML backend protocol: a thin layer over ``MOSService``.

Every answer is JSON: a ``UserError`` (bad request body, bad parameter) is a 400 with its one-line
message, an HTTP error keeps its status, anything else is logged with its traceback and is a 500.
"""
from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..config import Config
from ..errors import RequestError, UserError
from ..labelstudio.webhooks import WEBHOOK_HEADER
from .service import MOSService

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/", "/health", "/webhook"})
#: Largest request body accepted (413 beyond): a /predict batch of tasks is far smaller.
MAX_BODY_BYTES = 32 * 2**20


def create_app(config: Config | None = None, service: MOSService | None = None) -> Flask:
    """Build the app; pass ``service`` to share one (and its training thread) with a caller."""
    config = config or Config.from_env()
    service = service or MOSService(config)
    service.start()
    app = Flask("ml_backend")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
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

    @app.errorhandler(UserError)
    def user_error(exc: UserError) -> tuple[Response, int]:
        log.warning("%s rejected: %s", request.path, exc)
        return jsonify({"error": str(exc)}), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description or exc.name}), exc.code or 500

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> tuple[Response, int]:
        log.exception("%s failed", request.path)
        return jsonify({"error": f"internal error: {type(exc).__name__} (see the backend log)"}), 500

    def json_body() -> Any:
        try:
            return json.loads(request.get_data())
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            raise RequestError(f"{request.path}: body is not JSON") from None

    def handle(action: Callable[[Any], dict[str, Any]]) -> tuple[Response, int]:
        return jsonify(action(json_body())), 200

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": "MOSModel"})

    @app.post("/setup")
    def setup() -> tuple[Response, int]:
        return handle(lambda body: service.setup(body, host=request.host))

    @app.post("/predict")
    def predict() -> tuple[Response, int]:
        return handle(service.predict)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        return handle(lambda body: service.webhook(body, token=request.headers.get(WEBHOOK_HEADER)))

    @app.get("/status")
    def status() -> Response:
        return jsonify(service.status())

    @app.get("/versions")
    def versions() -> Response:
        return jsonify(service.versions())

    return app
