"""The Label Studio server as homesound uses it, through label-studio-sdk.

Where the server is and who we are comes from LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY or a small
TOML file, never from the command line (a token there lands in shell history and `ps`). Both
kinds of key work: a legacy token is sent as is, a personal access token (a JWT refresh token)
is exchanged for short-lived access tokens by the SDK. Every failure of the server - down, cut
mid-request, wrong key, refused request - becomes one LabelStudioError naming the server and
what to do. Credentials written into LABEL_STUDIO_URL (http://user:password@host) are dropped:
requests carry the API key only, never HTTP Basic auth, and the URL shown or stored anywhere goes
through homesound.redact.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from homesound.errors import HomesoundError
from homesound.redact import redact_text, redact_url, strip_credentials

log = logging.getLogger(__name__)

CONFIG_ENV = "HOMESOUND_LABEL_STUDIO_CONFIG"
DEFAULT_CONFIG_PATH = Path("~/.config/homesound/label-studio.toml")
REQUEST_TIMEOUT_SECONDS = 60.0
KEY_HELP = (
    "set LABEL_STUDIO_API_KEY (or api_key in the config file) to a personal access token or legacy "
    "token from Label Studio's Account & Settings page"
)

T = TypeVar("T")


class LabelStudioError(HomesoundError):
    """Label Studio could not be reached, refused our key, or refused a request."""


@dataclass(frozen=True)
class LabelStudioSettings:
    url: str
    api_key: str
    # Where the server's LOCAL_FILES_DOCUMENT_ROOT points: clips are served relative to it.
    local_files_document_root: str = "/"
    source: str = "environment"  # for messages: where these settings came from

    def __repr__(self) -> str:  # never print the key
        return f"LabelStudioSettings(url={redact_url(self.url)!r}, api_key='***', source={self.source!r})"


def load_settings(environ: Mapping[str, str] | None = None, config_path: str | os.PathLike | None = None) -> LabelStudioSettings:
    """Environment first, then the config file ($HOMESOUND_LABEL_STUDIO_CONFIG or ~/.config/homesound/label-studio.toml).

    The file holds: url = "http://localhost:8080", api_key = "...", local_files_document_root = "/srv/audio".
    """
    environ = os.environ if environ is None else environ
    explicit = config_path or environ.get(CONFIG_ENV)
    path = Path(explicit or DEFAULT_CONFIG_PATH).expanduser()
    from_file: dict[str, Any] = {}
    if path.is_file():
        try:
            from_file = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as error:
            raise LabelStudioError(f"cannot read Label Studio settings from {path}: {error}") from error
    elif explicit:
        raise LabelStudioError(f"Label Studio settings file {path} does not exist")

    url = environ.get("LABEL_STUDIO_URL") or from_file.get("url")
    api_key = environ.get("LABEL_STUDIO_API_KEY") or from_file.get("api_key")
    root = (
        environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        or environ.get("LOCAL_FILES_DOCUMENT_ROOT")
        or from_file.get("local_files_document_root")
        or "/"
    )
    if not url:
        raise LabelStudioError(
            f"no Label Studio server given: set LABEL_STUDIO_URL (e.g. http://localhost:8080) or url in {path}"
        )
    if not api_key or not str(api_key).strip():
        raise LabelStudioError(f"no Label Studio API key given: {KEY_HELP} (or in {path})")
    source = "environment" if environ.get("LABEL_STUDIO_URL") else str(path)
    url, had_credentials = strip_credentials(str(url).strip().rstrip("/"))
    if had_credentials:
        log.warning("the user and password in the Label Studio URL (%s) are ignored: homesound signs in with "
                    "the API key alone", redact_url(url))
    return LabelStudioSettings(url, str(api_key).strip(), str(root), source)


class LabelStudio:
    """A checked connection: constructing it proves the server answers and accepts the key."""

    def __init__(self, settings: LabelStudioSettings):
        from label_studio_sdk import (
            LabelStudio as Client,  # heavy import: only when talking to the server
        )

        self.settings = settings
        self.base_url = strip_credentials(settings.url)[0]  # the API key signs in, never URL credentials
        self.url = redact_url(self.base_url)  # for messages and the workspace
        self.client = self._call("connect", lambda: Client(
            base_url=self.base_url, api_key=settings.api_key, timeout=REQUEST_TIMEOUT_SECONDS
        ))
        who = self._call("check the API key", lambda: self.client.users.whoami())
        self.user = getattr(who, "email", None) or getattr(who, "username", None) or str(getattr(who, "id", "?"))

    # ---- projects and storage -------------------------------------------------------------------

    def project_exists(self, project_id: int) -> bool:
        from label_studio_sdk.core.api_error import ApiError

        try:
            self.client.projects.get(id=project_id)
            return True
        except ApiError as error:
            if error.status_code == 404:
                return False
            raise self._error("look up project", error) from error
        except Exception as error:
            raise self._error("look up project", error) from error

    def find_project(self, title: str) -> int | None:
        projects = self._call("list projects", lambda: list(self.client.projects.list(title=title)))
        matching = sorted(project.id for project in projects if project.title == title)
        return matching[0] if matching else None

    def create_project(self, title: str, label_config: str, description: str) -> int:
        project = self._call("create the project", lambda: self.client.projects.create(
            title=title, label_config=label_config, description=description
        ))
        return int(project.id)

    def local_storage_for(self, project_id: int, directory: str) -> int | None:
        storages = self._call("list storages", lambda: self.client.import_storage.local.list(project=project_id))
        for storage in storages:
            if os.path.normpath(storage.path or "") == os.path.normpath(directory):
                return int(storage.id)
        return None

    def add_local_storage(self, project_id: int, directory: str) -> int:
        """Let the project serve files from directory (never synced: tasks are imported one by one)."""
        storage = self._call("add local-files storage for the clips", lambda: self.client.import_storage.local.create(
            project=project_id, path=directory, title="homesound clips", use_blob_urls=False,
            description="clips cut by homesound push",
        ))
        return int(storage.id)

    def local_file_url(self, path: str | os.PathLike) -> str:
        """The URL Label Studio serves a local file under: relative to its LOCAL_FILES_DOCUMENT_ROOT."""
        from urllib.parse import quote

        root = Path(self.settings.local_files_document_root).resolve()
        absolute = Path(path).resolve()
        if root not in absolute.parents:
            raise LabelStudioError(
                f"clip {absolute} is not under Label Studio's LOCAL_FILES_DOCUMENT_ROOT {root}: choose a clip "
                "folder inside it, or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to the server's value"
            )
        return f"/data/local-files/?d={quote(str(absolute.relative_to(root)))}"

    def check_serves(self, url_path: str, clip: str) -> None:
        """Fetch one clip the way the labeling page will, so a wrong document root fails now, not in the browser."""
        headers = self.client._client_wrapper.get_headers()  # the SDK's auth headers (token or fresh access token)
        response = self._call("fetch a clip", lambda: self.client._client_wrapper.httpx_client.httpx_client.get(
            self.base_url + url_path, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS))
        if response.status_code != 200:
            raise LabelStudioError(
                f"Label Studio at {self.url} does not serve the clip {clip} (HTTP {response.status_code} for "
                f"{url_path}): start it with LOCAL_FILES_SERVING_ENABLED=true and LOCAL_FILES_DOCUMENT_ROOT set to a "
                "folder that holds the clip folder, and set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (or "
                "local_files_document_root in the config file) to that same folder"
            )

    # ---- tasks ----------------------------------------------------------------------------------

    def tasks(self, project_id: int, with_annotations: bool = False) -> Iterator[dict]:
        """All tasks of the project as plain dicts; read to the end before acting on them."""
        fields = "all" if with_annotations else None
        pager = self._call("list tasks", lambda: self.client.tasks.list(project=project_id, fields=fields, page_size=100))
        return iter(self._call("list tasks", lambda: [_plain(task) for task in pager]))

    def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """Email (else username) of each user id, to store who labeled what."""
        names = {}
        for user_id in sorted(set(user_ids)):
            user = self._call("look up an annotator", lambda user_id=user_id: self.client.users.get(id=user_id))
            names[user_id] = user.email or user.username or str(user_id)
        return names

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int] | None:
        """Create tasks (with predictions) in one request; their ids in order, or None if the server did not say."""
        response = self._call("import tasks", lambda: self.client.projects.import_tasks(
            id=project_id, request=list(tasks), return_task_ids=True
        ))
        task_ids = getattr(response, "task_ids", None)
        if task_ids is not None and len(task_ids) == len(tasks):
            return [int(task_id) for task_id in task_ids]
        return None

    # ---- errors ---------------------------------------------------------------------------------

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except LabelStudioError:
            raise
        except Exception as error:
            raise self._error(what, error) from error

    def _error(self, what: str, error: Exception) -> LabelStudioError:
        return translate_error(self.url, what, error)


def translate_error(url: str, what: str, error: Exception) -> LabelStudioError:
    """url: as it may be shown (redacted); the error's own text is redacted too (httpx quotes URLs)."""
    translated = _translate_error(redact_url(url), what, error)
    return LabelStudioError(redact_text(str(translated)))


def _translate_error(url: str, what: str, error: Exception) -> LabelStudioError:
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(error, ApiError):
        detail = _detail(error.body)
        if error.status_code in (401, 403):
            return LabelStudioError(
                f"Label Studio at {url} refused the API key (HTTP {error.status_code}: {detail}); {KEY_HELP}"
            )
        return LabelStudioError(f"Label Studio at {url} could not {what} (HTTP {error.status_code}: {detail})")
    if isinstance(error, httpx.TransportError):
        return LabelStudioError(
            f"Label Studio at {url} is not reachable ({type(error).__name__}: {error or 'connection lost'}) "
            f"while trying to {what}; start the server or fix LABEL_STUDIO_URL, then run this again: "
            "finished work is kept and nothing is done twice"
        )
    return LabelStudioError(f"Label Studio at {url} could not {what}: {type(error).__name__}: {error}")


def _detail(body: Any) -> str:
    if isinstance(body, Mapping):
        detail = body.get("detail") or body.get("validation_errors") or body
        return str(detail)[:300]
    return str(body)[:300]


def _plain(model: Any) -> dict:
    if isinstance(model, dict):
        return model
    # The SDK's task model declares some fields narrower than the server sends; keep what was sent.
    return model.model_dump(warnings=False)
