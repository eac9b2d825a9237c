"""Resource hashes computed once per resource, not once per exported span."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk import resources
from opentelemetry.sdk.resources import Resource

from clstock_otel_distro.patches import registry, resource_hash

_SDK_HASH = Resource.__hash__


@pytest.fixture
def dumps_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[None]]:
    """Calls of the JSON encoding the SDK's Resource.__hash__ runs; the patch undone after."""
    calls: list[None] = []

    def counting(*args, **kwargs):
        calls.append(None)
        return json.dumps(*args, **kwargs)

    monkeypatch.setattr(resources, "dumps", counting)
    assert registry.install(resource_hash.PATCH) is registry.PatchState.ACTIVE
    yield calls
    registry.uninstall(resource_hash.PATCH)


def test_each_resource_is_encoded_once(dumps_calls):
    resource = Resource({"service.name": "clstock", "host.name": "a"})
    first = hash(resource)
    assert all(hash(resource) == first for _ in range(5))
    assert len(dumps_calls) == 1


def test_the_hash_is_the_sdks_own(dumps_calls):
    """Same value as before, so equal resources still find each other in a dict."""
    resource = Resource({"service.name": "clstock"}, "https://opentelemetry.io/schemas/1")
    assert hash(resource) == _SDK_HASH(resource)
    twin = Resource({"service.name": "clstock"}, "https://opentelemetry.io/schemas/1")
    assert {resource: "spans"}[twin] == "spans"


def test_different_resources_keep_different_hashes(dumps_calls):
    one = Resource({"service.name": "clstock"})
    merged = one.merge(Resource({"service.version": "2"}))
    assert hash(one) != hash(merged)
    assert hash(merged) == _SDK_HASH(merged)


def test_install_is_idempotent_and_uninstall_restores(dumps_calls):
    registry.install(resource_hash.PATCH)
    assert Resource.__hash__.__wrapped__ is _SDK_HASH
    registry.uninstall(resource_hash.PATCH)
    assert Resource.__hash__ is _SDK_HASH


def test_the_configurator_installs_it(run_instrumented):
    """Under opentelemetry-instrument the exported spans' resource is hashed once."""
    code = ("from opentelemetry.sdk.resources import Resource\n"
            "print(hasattr(Resource.__hash__, '__wrapped__'))")
    done = run_instrumented(code, {"OTEL_TRACES_EXPORTER": "none"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "True"
