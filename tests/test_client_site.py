"""clients.site: resolving the hub for clients, and its cache (no network)."""
from __future__ import annotations

import pytest

from clients import site
from ocs_core.site.args import SiteConfigError
from ocs_core.testing import write_site_config


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = site.parse_control_args

    def counting(*a, **kw):
        calls.append(kw.get("args"))
        return original(*a, **kw)

    monkeypatch.setattr(site, "parse_control_args", counting)
    monkeypatch.setattr(site, "_HUB_CACHE", {})
    return calls


def test_hub_from_site_file(tmp_path, counted):
    path = write_site_config(tmp_path, 18123, realm="r1", address_root="lab")
    hub = site.resolve_hub(["--site-file", str(path)])
    assert hub == site.Hub("ws://127.0.0.1:18123/ws", "http://127.0.0.1:18123/call", "r1", "lab")
    assert site.resolve_hub(site_file=str(path)) == hub


def test_same_file_is_parsed_once_and_changes_are_seen(tmp_path, counted):
    path = write_site_config(tmp_path, 18123)
    first = site.resolve_hub(["--site-file", str(path)])
    assert site.resolve_hub(["--site-file", str(path)]) is first
    assert len(counted) == 1
    write_site_config(tmp_path, 18999)  # the file changes (new inode, size or mtime)
    assert site.resolve_hub(["--site-file", str(path)]).wamp_http == "http://127.0.0.1:18999/call"
    assert len(counted) == 2
    # other options are another key
    assert site.resolve_hub(["--site-file", str(path), "--site-http", "http://h:1/call"]).wamp_http \
        == "http://h:1/call"


def test_missing_file_is_an_error_not_cached(tmp_path, counted):
    with pytest.raises(SiteConfigError):
        site.resolve_hub(["--site-file", str(tmp_path / "none.yaml")])
    with pytest.raises(SiteConfigError):
        site.resolve_hub(["--site-file", str(tmp_path / "none.yaml")])
    assert len(counted) == 2
