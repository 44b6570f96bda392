"""The `git` executable, run with a time limit in a clean environment against a bare mirror.

Every call goes through `run`: no user or system Git configuration, no terminal prompts, only the
transports the settings allow (GIT_ALLOW_PROTOCOL), and a credential only ever in the child's
environment or a private temporary file, never in its arguments, the mirror's config or a URL.
Hand-written over dulwich: the stock `git` speaks every transport (https, ssh, file) and does the
graph queries (`for-each-ref --contains`) the gates need, which dulwich leaves to the caller."""

import base64
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

MAX_DEFINITION_BYTES = 2 * 1024 * 1024
MAX_COMMITS_PER_SYNC = 200
GIT = shutil.which("git") or "/usr/bin/git"
SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")

UNREACHABLE = (
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "no such file or directory",
    "network is unreachable",
    "could not read from remote repository",
)
AUTH_FAILED = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied (publickey",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "invalid username or password",
    "http basic: access denied",
)


class GitError(Exception):
    """A git call failed; `kind` is unreachable, auth_failed, timeout or git. The message never
    holds the credential (callers mask it) and names no internal path."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Commit:
    sha: str
    author_name: str
    author_email: str
    committed_at: datetime
    subject: str


def mirror_path(repository_pk: int) -> Path:
    return Path(settings.GIT_MIRROR_ROOT) / f"repository-{repository_pk}.git"


def is_file_url(url: str) -> bool:
    return url.lower().startswith("file://")


def _protocols() -> str:
    allowed = ["https", "ssh"]
    if settings.GIT_ALLOW_LOCAL_URLS:
        allowed += ["http", "file"]
    return ":".join(allowed)


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(settings.GIT_MIRROR_ROOT)),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": _protocols(),
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    }


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout=None) -> bytes:
    """Run `git <args>`; GitError on failure or timeout (stderr's first lines as the message)."""
    limit = timeout or settings.GIT_TIMEOUT_SECONDS
    try:
        done = subprocess.run(  # noqa: S603  (an argument list, no shell; URLs are checked not to start with "-")
            [GIT, *args],
            cwd=cwd,
            env={**_base_env(), **(env or {})},
            capture_output=True,
            timeout=limit,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitError("timeout", f"git {args[0]} took longer than {limit} s and was stopped.") from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()
        raise GitError(classify(stderr), _first_lines(stderr) or f"git {args[0]} failed ({done.returncode}).")
    return done.stdout


def _first_lines(text: str) -> str:
    lines = [line.removeprefix("fatal: ").removeprefix("error: ") for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:3])[:500]


def classify(stderr: str) -> str:
    lowered = stderr.lower()
    if any(marker in lowered for marker in AUTH_FAILED):
        return "auth_failed"
    if any(marker in lowered for marker in UNREACHABLE):
        return "unreachable"
    return "git"


@contextmanager
def credential_env(url: str, credential: str | None):
    """The child environment that hands `credential` to git: an Authorization header through
    GIT_CONFIG_* variables for http(s) ("user:token", or a bare token), a private key file for ssh."""
    if not credential:
        yield {}
        return
    if urlsplit(url).scheme.lower() in ("https", "http"):
        userpass = credential if ":" in credential else f"x-access-token:{credential}"
        header = "Authorization: Basic " + base64.b64encode(userpass.encode()).decode()
        yield {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": header}
        return
    folder = tempfile.mkdtemp(prefix="pnx-git-key-")
    try:
        key = Path(folder) / "key"
        key.touch(mode=0o600)
        key.write_text(credential.strip() + "\n")
        known_hosts = Path(settings.GIT_MIRROR_ROOT) / "known_hosts"
        yield {
            "GIT_SSH_COMMAND": (
                f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
                f"-o UserKnownHostsFile={known_hosts}"
            )
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fetch(repository_pk: int, url: str, credential: str | None) -> Path:
    """Bring the bare mirror up to date with the remote's branches and tags (force, prune: a
    force-push or a deleted tag is reflected exactly). Returns the mirror's path."""
    mirror = mirror_path(repository_pk)
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        run(["init", "--bare", "--quiet", str(mirror)])
    with credential_env(url, credential) as env:
        run(
            [
                "fetch",
                "--quiet",
                "--prune",
                "--prune-tags",
                "--force",
                "--no-write-fetch-head",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            cwd=mirror,
            env=env,
        )
    return mirror


def head_of(mirror: Path, branch: str) -> str | None:
    try:
        return run(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], cwd=mirror).decode().strip()
    except GitError:
        return None


def commits_touching(mirror: Path, branch: str, path: str) -> list[str]:
    """Commits of the branch's first-parent line that changed `path`, oldest first (the newest
    MAX_COMMITS_PER_SYNC)."""
    out = run(
        [
            "log",
            "--first-parent",
            f"--max-count={MAX_COMMITS_PER_SYNC}",
            "--format=%H",
            f"refs/heads/{branch}",
            "--",
            path,
        ],
        cwd=mirror,
    )
    return list(reversed(out.decode().split()))


def tags(mirror: Path) -> dict[str, str]:
    """Tag name → the commit it points at (annotated tags peeled)."""
    out = run(["for-each-ref", "--format=%(refname:short)%09%(objectname)%09%(*objectname)", "refs/tags/"], cwd=mirror)
    result = {}
    for line in out.decode().splitlines():
        name, sha, peeled = [*line.split("\t"), "", ""][:3]
        result[name] = peeled or sha
    return result


def commit_info(mirror: Path, sha: str) -> Commit:
    out = run(["show", "-s", "--format=%H%x1f%an%x1f%ae%x1f%cI%x1f%s", sha], cwd=mirror).decode().strip()
    full, name, email, when, subject = out.split("\x1f", 4)
    return Commit(full, name, email, datetime.fromisoformat(when), subject)


def read_file(mirror: Path, sha: str, path: str) -> bytes | None:
    """The file's bytes at the commit; None when it is not there. GitError when it is too big."""
    listing = run(["ls-tree", "-l", sha, "--", path], cwd=mirror).decode().split()
    if not listing or listing[1] != "blob":
        return None
    size = int(listing[3]) if listing[3].isdigit() else 0
    if size > MAX_DEFINITION_BYTES:
        raise GitError("git", f"{path} is {size} bytes; at most {MAX_DEFINITION_BYTES}.")
    return run(["cat-file", "blob", listing[2]], cwd=mirror)


def refs_containing(mirror: Path, sha: str) -> list[str] | None:
    """Full names of the branches and tags whose history contains the commit (`refs/heads/main`,
    `refs/tags/v1`); None when the mirror does not have the commit (gone after a force-push and
    a gc, or never fetched)."""
    if not SHA.fullmatch(sha or "") or not (mirror / "HEAD").exists():
        return None
    try:
        run(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=mirror, timeout=30)
    except GitError:
        return None
    out = run(["for-each-ref", f"--contains={sha}", "--format=%(refname)", "refs/heads/", "refs/tags/"], cwd=mirror)
    return out.decode().split()


WEB_BASE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[^/:@]+):(?!//)(?P<path>.+?)(?:\.git)?/?$")


def web_base(url: str) -> tuple[str, str] | None:
    """(style, https base) of a GitHub, GitLab or Bitbucket remote, for compare links; None otherwise."""
    parts = urlsplit(url)
    if parts.scheme in ("https", "http", "ssh") and parts.hostname:
        host, path = parts.hostname, parts.path.strip("/").removesuffix(".git")
    elif "://" not in url and (match := WEB_BASE.match(url)):
        host, path = match.group("host"), match.group("path").strip("/")
    else:
        return None
    for style in ("github", "gitlab", "bitbucket"):
        if style in host.lower() and path:
            return style, f"https://{host.lower()}/{path}"
    return None


def compare_url(url: str, base_sha: str | None, head_sha: str) -> str:
    """The provider's page comparing two commits (or showing one, without a base)."""
    found = web_base(url)
    if found is None:
        return ""
    style, base = found
    if not base_sha:
        return f"{base}/commits/{head_sha}" if style == "bitbucket" else f"{base}/commit/{head_sha}"
    if style == "github":
        return f"{base}/compare/{base_sha}...{head_sha}"
    if style == "gitlab":
        return f"{base}/-/compare/{base_sha}...{head_sha}"
    return f"{base}/branches/compare/{head_sha}%0D{base_sha}"
