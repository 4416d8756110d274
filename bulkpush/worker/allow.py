"""What a worker lets its jobs do: the operator's allowances, checked before a part runs.

Whoever can write to the queue (the control API's token, the SQLite file,
Redis) chooses the jobs a worker runs; the worker's *operator* chooses what
those jobs may reach, when starting it (``bulkpush worker --allow-*``). A
job names an API URL, the *name* of the environment variable whose value is
sent there as the token, files the worker reads (sources, a CA bundle) and
files it writes (report, rejects). :class:`Allowances` holds what a worker
accepts; :meth:`Allowances.admit` refuses a job asking for anything else
before a token is read, a request sent or a file opened:

- **API URLs**, compared by origin (scheme, host, port; not the path), as
  the requests will be sent: the default URL of the job's target kind
  (:data:`bulkpush.targets.KINDS`) and ``api_urls``.
- **Token variables**: ``BULKPUSH_TOKEN`` and every :class:`TokenGrant`
  without a URL, to any of those API URLs; a grant with a URL
  (``--allow-token-env NAME=URL``) sends that variable to that URL's origin,
  which needs no other allowance, and no other variable goes there.
- **Files**, resolved first (symlinks, ``..``): sources and the CA bundle
  under ``dirs`` or ``read_dirs``; the report and rejects files under
  ``dirs``. :meth:`Allowances.for_queue` adds a SQLite queue's directory to
  ``dirs`` and keeps the queue's own files out of reach. The current
  directory is not allowed unless named: under a service manager it is ``/``.
- **TLS verification off** (a job's ``insecure``) only with ``insecure``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from yarl import URL

from bulkpush.errors import ConfigError
from bulkpush.targets import KINDS
from bulkpush.worker._urls import redact_url
from bulkpush.worker.jobs import DEFAULT_TOKEN_ENV, JobSpec

__all__ = ["REFUSED", "Admitted", "Allowances", "TokenGrant"]

# The start of a refused job's error (``jobs show``) and of POST /jobs' 403.
REFUSED = "refused by this worker's allowances"
# The files SQLite keeps next to the queue file.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")

_Origin = tuple[str, str, int]


def _origin(url: str) -> _Origin | None:
    """The (scheme, host, port) requests to the API at ``url`` go to; None if no http(s) URL."""
    # Parsed as the transport builds request URLs (the base, then a path
    # beginning with "/") by the library that sends them (yarl, aiohttp's):
    # what is checked is what is contacted.
    try:
        u = URL(url.rstrip("/") + "/streams")
        scheme, host, port = u.scheme, u.host, u.port
    except (TypeError, ValueError):
        return None
    if scheme not in ("http", "https") or not host or port is None:
        return None
    return scheme, host.lower(), port


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _resolved(path: str) -> str:
    """``path`` absolute, with every symlink and ``..`` resolved (raises ValueError for NUL)."""
    return os.path.realpath(path)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """Jobs may send the token in ``$env`` to ``api_url``'s origin (None: to every allowed URL)."""

    env: str
    api_url: str | None = None

    def __post_init__(self) -> None:
        if not self.env or not self.env.replace("_", "").isalnum():
            raise ConfigError(f"--allow-token-env takes NAME or NAME=URL, not {self.env!r}")
        if self.api_url is not None and _origin(self.api_url) is None:
            raise ConfigError(
                f"--allow-token-env {self.env}={redact_url(self.api_url)}: not an http(s) URL"
            )

    @classmethod
    def parse(cls, text: str) -> TokenGrant:
        """``NAME`` or ``NAME=URL``, as ``--allow-token-env`` takes it; raises ConfigError."""
        env, eq, url = text.partition("=")
        return cls(env.strip(), url.strip() if eq else None)

    def __str__(self) -> str:
        return self.env if self.api_url is None else f"{self.env}={redact_url(self.api_url)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """An admitted part's files, resolved: the worker opens these, not the paths as queued."""

    source: str
    rejects: str | None = None
    report: str | None = None
    ca_bundle: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowances:
    """What jobs may ask of a worker (see the module docstring); the defaults allow the least.

    ``api_urls``: API URLs besides the default of each job's kind.
    ``token_envs``: token variables besides ``BULKPUSH_TOKEN``. ``dirs``:
    directories jobs may read and write files in; ``read_dirs``: only read.
    ``insecure``: jobs may turn TLS verification off. ``queue_file``: a
    SQLite queue's file, which jobs may neither read nor write (set by
    :meth:`for_queue`). Directories are resolved when the object is made;
    ``api_urls`` that are not http(s) URLs raise :class:`ConfigError`.
    """

    api_urls: tuple[str, ...] = ()
    token_envs: tuple[TokenGrant, ...] = ()
    dirs: tuple[str, ...] = ()
    read_dirs: tuple[str, ...] = ()
    insecure: bool = False
    queue_file: str | None = None

    def __post_init__(self) -> None:
        for url in self.api_urls:
            if _origin(url) is None:
                raise ConfigError(f"--allow-api-url: {redact_url(url)!r} is not an http(s) URL")
        try:
            dirs = tuple(dict.fromkeys(_resolved(d) for d in self.dirs))
            reads = tuple(dict.fromkeys(_resolved(d) for d in self.read_dirs))
            queue_file = _resolved(self.queue_file) if self.queue_file else None
        except ValueError as exc:
            raise ConfigError(f"--allow-dir: not a usable path: {exc}") from exc
        object.__setattr__(self, "dirs", dirs)
        object.__setattr__(self, "read_dirs", tuple(d for d in reads if d not in dirs))
        object.__setattr__(self, "queue_file", queue_file)

    def for_queue(self, url: str) -> Allowances:
        """These allowances on the queue at ``url``: a SQLite queue's directory joins ``dirs``.

        The queue's own files (``jobs.db`` and its ``-wal``, ``-shm``,
        ``-journal``) stay out of reach. A Redis queue changes nothing.
        """
        if not url.startswith("sqlite:///"):
            return self
        # As the SQLite queue reads its URL: sqlite:///relative, sqlite:////absolute.
        path = os.path.expanduser(url[len("sqlite:///") :])
        try:
            real = _resolved(path)
        except ValueError:
            return self  # the queue cannot open such a path either
        return replace(self, dirs=(*self.dirs, os.path.dirname(real)), queue_file=real)

    def summary(self) -> str:
        """One line for the worker's log: what its jobs may use."""
        defaults = sorted({k.default_api_url for k in KINDS.values()})
        urls = ", ".join([*(f"{u} (default)" for u in defaults), *map(redact_url, self.api_urls)])
        tokens = ", ".join([DEFAULT_TOKEN_ENV, *map(str, self.token_envs)])
        text = (
            f"jobs may push to {urls}; with token variables {tokens}; "
            f"read and write files under {', '.join(self.dirs) or 'no directory'}"
        )
        if self.read_dirs:
            text += f"; read files under {', '.join(self.read_dirs)}"
        if self.insecure:
            text += "; turn TLS verification off"
        return text

    def refusal(self, spec: JobSpec) -> str | None:
        """Why a worker with these allowances refuses ``spec`` (every reason), or None.

        Touches the filesystem (to resolve paths): call it off the event loop.
        """
        problems, _ = self._check(spec, None)
        return "; ".join(problems) or None

    def admit(self, spec: JobSpec, *, source: str) -> Admitted:
        """The files of the part of ``spec`` reading ``source``, resolved; or why not.

        Raises :class:`ConfigError` (``refused by this worker's allowances:``
        and every reason) when the job asks for anything not allowed. The
        part's own ``source`` is checked besides the job's sources: a queue
        written by hand may hold a part the spec does not name.
        """
        problems, resolved = self._check(spec, source)
        if problems:
            raise ConfigError(f"{REFUSED}: {'; '.join(problems)}")
        options, target = spec.options, spec.target
        return Admitted(
            source=resolved[source],
            rejects=resolved[options.rejects] if options.rejects else None,
            report=resolved[options.report] if options.report else None,
            ca_bundle=resolved[target.ca_bundle] if target.ca_bundle else None,
        )

    def _check(self, spec: JobSpec, source: str | None) -> tuple[list[str], dict[str, str]]:
        target, options = spec.target, spec.options
        problems: list[str] = []
        if problem := self._api_problem(target.kind, target.api_url, target.token_env):
            problems.append(problem)
        if target.insecure and not self.insecure:
            problems.append(
                "TLS verification off (insecure) is not allowed (bulkpush worker --allow-insecure)"
            )
        files: list[tuple[str, str | None, bool]] = [
            ("source", s, False) for s in dict.fromkeys((*spec.sources, source or ""))
        ]
        files += [
            ("CA bundle", target.ca_bundle, False),
            ("rejects file", options.rejects, True),
            ("report file", options.report, True),
        ]
        resolved: dict[str, str] = {}
        for what, path, write in files:
            if not path:
                continue
            try:
                real = _resolved(path)
            except ValueError as exc:
                problems.append(f"the {what} {path!r} is not a usable path: {exc}")
                continue
            resolved[path] = real
            if problem := self._path_problem(what, path, real, write=write):
                problems.append(problem)
        return problems, resolved

    def _api_problem(self, kind: str, api_url: str, env: str) -> str | None:
        shown = redact_url(api_url)
        origin = _origin(api_url)
        if origin is None:
            return f"the API URL {shown!r} is not an http(s) URL"
        listed = [KINDS[kind].default_api_url] if kind in KINDS else []
        listed += self.api_urls
        everywhere = {_origin(u) for u in listed}
        here = {g.env for g in self.token_envs if g.api_url and _origin(g.api_url) == origin}
        if origin not in everywhere and not here:
            allowed = ", ".join(map(redact_url, listed)) or "none"
            return (
                f"the API URL {shown} is not allowed (allowed: {allowed}; "
                "bulkpush worker --allow-api-url)"
            )
        names = set(here)
        if origin in everywhere:
            names.add(DEFAULT_TOKEN_ENV)
            names.update(g.env for g in self.token_envs if g.api_url is None)
        if env not in names:
            return (
                f"the token variable ${env} may not be sent to {shown} (allowed there: "
                f"{', '.join(sorted(names))}; bulkpush worker --allow-token-env {env}=URL)"
            )
        return None

    def _path_problem(self, what: str, path: str, real: str, *, write: bool) -> str | None:
        shown = path if real == path else f"{path} (resolved: {real})"
        if self.queue_file and real in {self.queue_file + s for s in _SQLITE_SUFFIXES}:
            return f"the {what} {shown} is a file of the queue"
        folders = self.dirs if write else (*self.dirs, *self.read_dirs)
        if any(_within(real, folder) for folder in folders):
            return None
        verb, flag = (
            ("write", "--allow-dir") if write else ("read", "--allow-dir or --allow-read-dir")
        )
        allowed = ", ".join(folders) or "none"
        return (
            f"the {what} {shown} is outside the directories jobs may {verb} "
            f"({allowed}; bulkpush worker {flag})"
        )
