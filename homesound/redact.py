"""One way to hide secrets in URLs, for everything a person or a file may see.

A URL can carry secrets in three places: credentials (`rtsp://user:password@camera/...`, the
password may itself contain '@' or ':'), query or fragment values (`?token=...`, `&api_key=...`,
`#access_token=...`) and, for webhooks, the path (Home Assistant's `/api/webhook/<secret id>`).
Every URL that reaches a message, a log line, the workspace or an MQTT payload goes through
`redact_url`; free text that may quote a URL (ffmpeg's error lines, exceptions of other
libraries) goes through `redact_text`, which also hides the secrets of URLs it was told about in
whatever form the other program printed them (percent-decoded, say).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

MASK = "***"
# Query or fragment parameters whose values are secrets (matched anywhere in the name, any case).
SECRET_PARAMETER = re.compile(r"token|key|secret|pass|pwd|auth|sig|credential|session|code", re.IGNORECASE)
# A URL in prose ends before whitespace, quotes and brackets, and does not take a sentence's last punctuation.
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]*[^\s'\"<>()\[\]{}.,;:!?]")
_PARAMETER = re.compile(r"([^&;=]+)=([^&;#]*)")
SHORTEST_SECRET = 3  # shorter values ("a", "1") would blank out ordinary words of the text around them


def redact_url(url: str, *, hide_path: bool = False) -> str:
    """`scheme://user:***@host/path?token=***`; hide_path: `scheme://host/***` (webhooks: the path is the secret)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, path = _split_authority(rest)
    at = authority.rfind("@")
    if at >= 0:
        user, colon, _ = authority[:at].partition(":")
        authority = (f"{user}:{MASK}" if colon else user) + authority[at:]
    path, hash_mark, fragment = path.partition("#")
    path, question, query = path.partition("?")
    if hide_path and path.strip("/"):
        path = "/" + MASK
    if hide_path and (query or fragment):
        query, fragment = (MASK if query else ""), (MASK if fragment else "")
    return (f"{scheme}://{authority}{path}{question}{_redact_parameters(query)}"
            f"{hash_mark}{_redact_parameters(fragment)}")


def strip_credentials(url: str) -> tuple[str, bool]:
    """The URL without its user:password@ part, and whether it had one."""
    scheme, separator, rest = url.partition("://")
    authority, path = _split_authority(rest)
    at = authority.rfind("@")
    if not separator or at < 0:
        return url, False
    return f"{scheme}://{authority[at + 1:]}{path}", True


def url_secrets(url: str, *, hide_path: bool = False) -> set[str]:
    """The secret strings inside a URL, raw and percent-decoded (to find them in other programs' text)."""
    found: set[str] = set()
    scheme, separator, rest = url.partition("://")
    if not separator:
        return found
    authority, path = _split_authority(rest)
    at = authority.rfind("@")
    if at >= 0 and ":" in authority[:at]:
        found.add(authority[:at].partition(":")[2])
    path, _, fragment = path.partition("#")
    path, _, query = path.partition("?")
    for part in (query, fragment):
        for name, value in _PARAMETER.findall(part):
            if hide_path or SECRET_PARAMETER.search(name):
                found.add(value)
    if hide_path:
        found.update(segment for segment in path.split("/") if segment)
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if len(secret) >= SHORTEST_SECRET}


def redact_text(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """Every URL in the text redacted, and every known secret replaced, longest first."""
    text = URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites every log record's message with redact_text (third-party libraries log URLs too)."""

    def __init__(self, secrets: set[str] | None = None):
        super().__init__()
        self.secrets = secrets if secrets is not None else set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _split_authority(rest: str) -> tuple[str, str]:
    """(authority, the rest). Credentials end at the LAST '@' of the authority, so an '@' in a password stays
    hidden; a raw '/', '?' or '#' in a password ("user:pa/ss@host", not a port after the colon) too."""
    end = _first_of(rest, "/?#")
    authority = rest[:end]
    if "@" not in authority and "@" in rest[end:]:
        _, colon, port = authority.partition(":")
        if colon and not port.isdigit():
            at = rest.rfind("@")
            end = at + 1 + _first_of(rest[at + 1:], "/?#")
    return rest[:end], rest[end:]


def _first_of(text: str, marks: str) -> int:
    found = [index for index in (text.find(mark) for mark in marks) if index >= 0]
    return min(found) if found else len(text)


def _redact_parameters(part: str) -> str:
    if not part:
        return part
    return _PARAMETER.sub(
        lambda match: f"{match.group(1)}={MASK}" if SECRET_PARAMETER.search(match.group(1)) and match.group(2)
        else match.group(0), part)
