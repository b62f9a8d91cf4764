"""The one error hierarchy of MOS Annotator.

``UserError`` is what a person can fix (a file, a field, a setting, a server that is down): its
message is one line naming the culprit, the CLI prints it and exits 1, the HTTP service answers
400 with it. Anything else that escapes is a bug: logged with its traceback, answered with 500.
Types that callers used to catch as ``ValueError`` still are one.
"""
from __future__ import annotations

from pathlib import Path


class MOSError(Exception):
    """Root of every error this package raises on purpose."""


class UserError(MOSError):
    """A problem with input, settings or surroundings; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError, ValueError):
    """A setting (``MOS_*`` variable) or a component parameter that cannot be used."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder that was named but is not there (or is not the right kind)."""


class WeightsError(UserError):
    """A weights file that is missing, unreadable or does not fit the model."""


class ImageReadError(UserError):
    """An image that cannot be used; names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"cannot read image {self.path}: {self.reason}")


class DatasetError(UserError, ValueError):
    """A labels file that is missing or malformed; names the file, line and field."""


class LabelConfigError(UserError, ValueError):
    """A labeling config that cannot hold a MOS (no Rating/Number tied to an Image...)."""


class LabelStudioError(UserError):
    """A Label Studio call failed; says what to check (token, URL, project)."""


class TaskImageError(UserError, ValueError):
    """A task's image reference that cannot be turned into a readable local file."""


class SeedError(UserError):
    """A problem that stops the seed before anything is written to Label Studio."""


class RequestError(UserError, ValueError):
    """A request body the backend cannot use (HTTP 400)."""


class WebhookError(RequestError):
    """A webhook payload that is not an event we can interpret (HTTP 400)."""
