"""Load and validate a site configuration file (the ocs 0.12 ``site-config.yaml`` schema).

The file names the router (``hub``) and, per host, the agent instances that run there::

    hub:
      wamp_server: ws://127.0.0.1:8001/ws
      wamp_http: http://127.0.0.1:8001/call
      wamp_realm: test_realm
      address_root: observatory
    hosts:
      localhost:
        log-dir: logs
        agent-instances:
          - {agent-class: FakeDataAgent, instance-id: faker1, arguments: [--mode, acq]}

Every problem is reported as one :class:`SiteConfigError` line naming the file, the key and
what was expected. This module is pure: no Twisted, no network. The command-line side
(``add_arguments``, ``parse_args``, ``agent_address``) lives in :mod:`ocs_core.site.args`, which
imports this module (never the other way round).
"""
from __future__ import annotations

import dataclasses
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "SiteConfigError", "SiteConfig", "HubConfig", "HostConfig", "InstanceConfig", "CrossbarSettings",
    "load_site_config", "parse_site_config", "MANAGE_ALIASES", "MANAGE_MODES",
]

#: Canonical values of an instance's ``manage`` key.
MANAGE_MODES = ("host/up", "host/down", "docker/up", "docker/down", "ignore")
#: Accepted shorthands (YAML reads bare ``yes``/``no`` as booleans, hence True/False).
MANAGE_ALIASES: dict[Any, str] = {
    "yes": "host/up", True: "host/up", "no": "ignore", False: "ignore",
    "docker": "docker/up", "host": "host/up", "up": "host/up", "down": "host/down",
    None: "host/up",
}

_HUB_KEYS = ("wamp_server", "wamp_http", "wamp_realm", "address_root", "access_policy",
             "registry_address", "auth", "credentials", "anonymous", "http_key")
#: ``hub.auth``: ``none`` (open mode, ocs's behaviour) or ``cryptosign`` (per-agent keys).
AUTH_MODES = ("none", "cryptosign")
#: ``hub.anonymous`` (authenticated mode): may anonymous sessions join as controllers?
ANONYMOUS_MODES = ("controller", "none")
DEFAULT_CREDENTIALS = "ocs-credentials.yaml"
_KEY_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_WAMP_KEYS = ("wamp_server", "wamp_http", "wamp_realm")
_HOST_KEYS = ("agent-instances", "log-dir", "crossbar_timeout", "crossbar-timeout",
              "crossbar", "agent-paths") + _WAMP_KEYS
_CROSSBAR_KEYS = ("config-dir", "bin")
_INSTANCE_KEYS = ("agent-class", "instance-id", "arguments", "manage")
# One WAMP URI component: no dots, no whitespace, not empty.
_COMPONENT = re.compile(r"^[^\s.#]+$")
_URI = re.compile(r"^[^\s.#]+(\.[^\s.#]+)*$")


class SiteConfigError(ValueError):
    """A site configuration file, or the options resolved against it, is invalid."""


@dataclass(frozen=True)
class HubConfig:
    """The router every agent and client of the site talks to."""

    wamp_server: str
    wamp_http: str
    wamp_realm: str
    address_root: str
    access_policy: str | None = None
    auth: str = "none"  #: ``none`` or ``cryptosign``
    credentials: str | None = None  #: absolute path of the credentials file (authenticated mode)
    anonymous: str = "controller"  #: ``controller`` or ``none`` (authenticated mode)
    http_key: str | None = None  #: the HTTP bridge's signing key name (secret in credentials)

    @property
    def authenticated(self) -> bool:
        """Whether the router authenticates agents (``auth: cryptosign``)."""
        return self.auth != "none"


@dataclass(frozen=True)
class InstanceConfig:
    """One agent instance of a host."""

    agent_class: str
    instance_id: str
    arguments: list[str] = field(default_factory=list)
    manage: str = "host/up"


@dataclass(frozen=True)
class CrossbarSettings:
    """A host's ``crossbar`` entry (ocs: this host runs the router; ``config-dir`` and ``bin``
    are how ocs's ``ocsbow`` starts it). ocs-core renders crossbar's config from the hub and runs
    the crossbar of its own environment, so both keys are read and reported, not used."""

    config_dir: str | None = None
    bin: str | None = None


@dataclass(frozen=True)
class HostConfig:
    """One host entry: its agent instances, log directory and optional hub overrides."""

    name: str
    agent_instances: list[InstanceConfig] = field(default_factory=list)
    log_dir: str | None = None
    crossbar_timeout: float | None = None
    wamp_server: str | None = None
    wamp_http: str | None = None
    wamp_realm: str | None = None
    #: ocs's (deprecated) directories of agent scripts; agent classes come from entry points here.
    agent_paths: tuple[str, ...] = ()
    crossbar: CrossbarSettings | None = None

    def unused_settings(self) -> list[str]:
        """The ocs keys of this host that ocs-core reads but does not act on, one text each."""
        notes = []
        if self.agent_paths:
            notes.append("agent-paths (agent classes come from entry points, ocs plugins or "
                         "module:function)")
        if self.crossbar is not None and (self.crossbar.config_dir or self.crossbar.bin):
            keys = [k for k, v in (("config-dir", self.crossbar.config_dir),
                                   ("bin", self.crossbar.bin)) if v]
            notes.append(f"crossbar {'/'.join(keys)} (the router's config is rendered from hub)")
        return notes

    def instance(self, instance_id: str) -> InstanceConfig | None:
        """Return the instance with this id, or None."""
        for inst in self.agent_instances:
            if inst.instance_id == instance_id:
                return inst
        return None

    @property
    def instance_ids(self) -> list[str]:
        """The instance-ids of this host, in file order."""
        return [inst.instance_id for inst in self.agent_instances]


@dataclass(frozen=True)
class SiteConfig:
    """A whole site file: the hub and every host entry."""

    hub: HubConfig
    hosts: dict[str, HostConfig]
    path: Path | None = None

    def find_host(self, site_host: str | None = None) -> HostConfig | None:
        """Match a host: ``site_host`` (else the OS host name) first, then ``localhost``."""
        name = site_host or socket.gethostname()
        if name in self.hosts:
            return self.hosts[name]
        return self.hosts.get("localhost")

    def host(self, site_host: str | None = None) -> HostConfig:
        """Like :meth:`find_host`, but raise :class:`SiteConfigError` when nothing matches."""
        found = self.find_host(site_host)
        if found is None:
            name = site_host or socket.gethostname()
            raise SiteConfigError(
                f"{self.path or '<site config>'}: hosts: no entry for host {name!r} and no "
                f"'localhost' entry (known hosts: {', '.join(self.hosts) or 'none'}); "
                f"pass --site-host")
        return found

    def hub_for(self, host: HostConfig | None) -> HubConfig:
        """The hub as seen from ``host``: its wamp_* keys override the hub's."""
        if host is None:
            return self.hub
        overrides = {k: getattr(host, k) for k in _WAMP_KEYS if getattr(host, k) is not None}
        return dataclasses.replace(self.hub, **overrides)


def load_site_config(path: str | Path) -> SiteConfig:
    """Read and validate a site file.

    Args:
        path: the YAML file.

    Raises:
        SiteConfigError: the file is missing, is not YAML, or breaks the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteConfigError(f"{path}: site file not found (pass --site-file PATH, or --site NAME for $OCS_CONFIG_DIR/NAME.yaml)") from None
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read site file: {exc.strerror}") from None
    return parse_site_config(text, path)


def parse_site_config(text: str, path: str | Path | None = None) -> SiteConfig:
    """Validate the YAML text of a site file (``path`` is only used in messages)."""
    where = str(path) if path is not None else "<site config>"
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader subclass)
    except _DuplicateKey as exc:
        raise SiteConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SiteConfigError(f"{where}: not valid YAML{line}: {problem}") from None
    return _Validator(where).site(doc, Path(path) if path is not None else None)


class _DuplicateKey(yaml.YAMLError):
    pass


#: libyaml's parser when PyYAML has it (about 10x faster: clients parse the site file on every
#: construction), else the pure-Python one; the constructor is the safe one either way.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """A safe loader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue
            if duplicate:
                raise _DuplicateKey(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)



def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            type(None): "nothing"}.get(type(value), type(value).__name__)


class _Validator:
    """Walks the parsed YAML and builds the dataclasses, failing on the first problem."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, expected: str, got: Any = dataclasses.MISSING) -> SiteConfigError:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        found = "" if got is dataclasses.MISSING else f", got {_type_name(got)} {shown}"
        if isinstance(got, (dict, list)):
            found = f", got {_type_name(got)}"
        return SiteConfigError(f"{self.where}: {key}: expected {expected}{found}")

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, "a mapping", value)
        return value

    def known_keys(self, value: dict, key: str, allowed: tuple[str, ...]) -> None:
        for k in value:
            if k not in allowed:
                raise SiteConfigError(
                    f"{self.where}: {key}: unknown key {k!r} (expected one of: {', '.join(allowed)})")

    def string(self, value: Any, key: str, pattern: re.Pattern | None = None,
               what: str = "a non-empty string") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, what, value)
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, what, value)
        return value

    def url(self, value: Any, key: str, schemes: tuple[str, ...]) -> str:
        what = f"a {' or '.join(s + '://' for s in schemes)}HOST:PORT/PATH URL"
        text = self.string(value, key, what=what)
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in schemes or not parts.hostname or port is None:
            raise self.fail(key, what, value)
        return text

    def timeout(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(key, "a number of seconds >= 0 (0 = retry forever)", value)
        return float(value)

    def site(self, doc: Any, path: Path | None) -> SiteConfig:
        if doc is None:
            raise SiteConfigError(f"{self.where}: the file is empty (expected 'hub' and 'hosts')")
        doc = self.mapping(doc, "top level")
        self.known_keys(doc, "top level", ("hub", "hosts"))
        if "hub" not in doc:
            raise SiteConfigError(f"{self.where}: missing 'hub' (the router: wamp_server, "
                                  f"wamp_http, wamp_realm, address_root)")
        if "hosts" not in doc:
            raise SiteConfigError(f"{self.where}: missing 'hosts' (expected a mapping of "
                                  f"host names, e.g. 'localhost', to their agent-instances)")
        hub = self.hub(doc["hub"])
        if hub.authenticated:  # the credentials file, relative to the site file
            creds = Path(hub.credentials or DEFAULT_CREDENTIALS).expanduser()
            if not creds.is_absolute():
                creds = (path.parent if path is not None else Path.cwd()) / creds
            hub = dataclasses.replace(hub, credentials=str(creds.resolve()))
        hosts_doc = self.mapping(doc["hosts"], "hosts")
        hosts = {}
        for name, entry in hosts_doc.items():
            if not isinstance(name, str) or not name:
                raise self.fail("hosts", "host names that are strings", name)
            hosts[name] = self.host(name, entry)
        return SiteConfig(hub=hub, hosts=hosts, path=path)

    def hub(self, value: Any) -> HubConfig:
        hub = self.mapping(value, "hub")
        self.known_keys(hub, "hub", _HUB_KEYS)
        for k in ("wamp_server", "wamp_realm", "address_root"):
            if k not in hub:
                raise SiteConfigError(f"{self.where}: hub: missing {k!r}")
        server = self.url(hub["wamp_server"], "hub.wamp_server", ("ws", "wss"))
        if "wamp_http" in hub:
            http = self.url(hub["wamp_http"], "hub.wamp_http", ("http", "https"))
        else:  # ocs treats it as optional; derive the usual bridge URL from the websocket one
            parts = urlsplit(server)
            scheme = "https" if parts.scheme == "wss" else "http"
            http = f"{scheme}://{parts.netloc}/call"
        policy = hub.get("access_policy")
        if policy is not None and not isinstance(policy, str):
            raise self.fail("hub.access_policy", "a string", policy)
        auth = hub.get("auth", "none")
        if auth not in AUTH_MODES:
            raise self.fail("hub.auth", "none (open: anyone may act as any agent) or cryptosign "
                            "(each agent authenticates with its own key)", auth)
        anonymous = hub.get("anonymous", "controller")
        if anonymous not in ANONYMOUS_MODES:
            raise self.fail("hub.anonymous", "controller or none", anonymous)
        creds = hub.get("credentials")
        if creds is not None:
            creds = self.string(creds, "hub.credentials", what="a file path")
        http_key = hub.get("http_key")
        if http_key is not None:
            http_key = self.string(http_key, "hub.http_key", _KEY_NAME,
                                   "a key name (letters, digits, '_', '-')")
            if auth == "none":
                raise SiteConfigError(f"{self.where}: hub.http_key: signing the HTTP bridge needs "
                                      f"hub.auth: cryptosign (the secret lives in the credentials file)")
        return HubConfig(
            wamp_server=server, wamp_http=http,
            wamp_realm=self.string(hub["wamp_realm"], "hub.wamp_realm", _URI,
                                   "a realm name (no spaces)"),
            address_root=self.string(hub["address_root"], "hub.address_root", _URI,
                                     "a WAMP URI prefix such as 'observatory'"),
            access_policy=policy, auth=auth, credentials=creds, anonymous=anonymous,
            http_key=http_key)

    def host(self, name: str, value: Any) -> HostConfig:
        key = f"hosts.{name}"
        entry = self.mapping({} if value is None else value, key)
        self.known_keys(entry, key, _HOST_KEYS)
        if "crossbar_timeout" in entry and "crossbar-timeout" in entry:
            raise SiteConfigError(f"{self.where}: {key}: give crossbar_timeout only once "
                                  f"(found both crossbar_timeout and crossbar-timeout)")
        timeout = entry.get("crossbar_timeout", entry.get("crossbar-timeout"))
        if timeout is not None:
            timeout = self.timeout(timeout, f"{key}.crossbar_timeout")
        log_dir = entry.get("log-dir")
        if log_dir is not None:
            log_dir = self.string(log_dir, f"{key}.log-dir", what="a directory path")
        instances_doc = entry.get("agent-instances") or []
        if not isinstance(instances_doc, list):
            raise self.fail(f"{key}.agent-instances", "a list of instances", instances_doc)
        instances: list[InstanceConfig] = []
        seen: dict[str, int] = {}
        for i, inst_doc in enumerate(instances_doc):
            inst = self.instance(f"{key}.agent-instances[{i}]", inst_doc)
            if inst.instance_id in seen:
                raise SiteConfigError(
                    f"{self.where}: {key}.agent-instances[{i}]: duplicate instance-id "
                    f"{inst.instance_id!r} (already used by agent-instances[{seen[inst.instance_id]}])")
            seen[inst.instance_id] = i
            instances.append(inst)
        overrides = {}
        for k in _WAMP_KEYS:
            if entry.get(k) is not None:
                if k == "wamp_server":
                    overrides[k] = self.url(entry[k], f"{key}.{k}", ("ws", "wss"))
                elif k == "wamp_http":
                    overrides[k] = self.url(entry[k], f"{key}.{k}", ("http", "https"))
                else:
                    overrides[k] = self.string(entry[k], f"{key}.{k}", _URI, "a realm name")
        crossbar = None
        if entry.get("crossbar") is not None:
            cb = self.mapping(entry["crossbar"], f"{key}.crossbar")
            self.known_keys(cb, f"{key}.crossbar", _CROSSBAR_KEYS)
            values = {k: None if cb.get(k) is None else self.string(cb[k], f"{key}.crossbar.{k}",
                                                                     what="a path")
                      for k in _CROSSBAR_KEYS}
            crossbar = CrossbarSettings(config_dir=values["config-dir"], bin=values["bin"])
        paths = entry.get("agent-paths") or []
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list):
            raise self.fail(f"{key}.agent-paths", "a list of directories", paths)
        paths = tuple(self.string(p, f"{key}.agent-paths", what="directory paths") for p in paths)
        return HostConfig(name=name, agent_instances=instances, log_dir=log_dir,
                          crossbar_timeout=timeout, agent_paths=paths, crossbar=crossbar, **overrides)

    def instance(self, key: str, value: Any) -> InstanceConfig:
        inst = self.mapping(value, key)
        self.known_keys(inst, key, _INSTANCE_KEYS)
        for k in ("agent-class", "instance-id"):
            if k not in inst:
                raise SiteConfigError(f"{self.where}: {key}: missing {k!r}")
        agent_class = self.string(inst["agent-class"], f"{key}.agent-class")
        instance_id = self.string(inst["instance-id"], f"{key}.instance-id", _COMPONENT,
                                  "an instance-id without dots or spaces")
        key = f"{key} ({instance_id})"
        args = inst.get("arguments")
        if args is None:
            args = []
        if not isinstance(args, list):
            raise self.fail(f"{key}.arguments", "a list such as [--mode, acq]", args)
        manage = inst.get("manage", "host/up")
        try:
            manage = manage if manage in MANAGE_MODES else MANAGE_ALIASES[manage]
        except (KeyError, TypeError):
            raise self.fail(f"{key}.manage",
                            f"one of {', '.join(MANAGE_MODES)} (or yes, no, docker, up, down)",
                            manage) from None
        return InstanceConfig(agent_class=agent_class, instance_id=instance_id,
                              arguments=self.flatten(args, f"{key}.arguments"), manage=manage)

    def flatten(self, items: list, key: str) -> list[str]:
        out: list[str] = []
        for item in items:
            if isinstance(item, list):
                out.extend(self.flatten(item, key))
            elif item is None or isinstance(item, dict):
                raise self.fail(key, "strings, numbers or nested lists of them", item)
            else:
                out.append(str(item))
        return out

