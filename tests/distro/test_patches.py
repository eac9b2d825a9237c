"""The registry of upstream patches: every entry matches the installed upstream, and a
patch stands aside, with one warning, where it does not."""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from clstock_otel_distro.patches import ALL_PATCHES, registry
from clstock_otel_distro.patches.registry import PatchState, UpstreamPatch

_IDS = [patch.name for patch in ALL_PATCHES]
_REPLACING = [patch for patch in ALL_PATCHES if patch.replaces_symbol]


def _resolve(patch: UpstreamPatch) -> tuple[object, ...]:
    """The patched objects (a patch of several symbols names them joined by '+')."""
    found = []
    for symbol in patch.symbol.split("+"):
        owner: object = importlib.import_module(patch.module)
        for part in symbol.split("."):
            owner = vars(owner)[part] if isinstance(owner, type) else getattr(owner, part)
        found.append(owner)
    return tuple(found)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Every patch a test installs is undone afterwards."""
    yield
    for patch in ALL_PATCHES:
        registry.uninstall(patch)


@pytest.mark.parametrize("patch", ALL_PATCHES, ids=_IDS)
def test_the_installed_upstream_is_the_verified_one(patch):
    """Fails loudly when a new upstream release is installed: re-verify, then widen the range."""
    assert registry._version_problem(patch) is None


@pytest.mark.parametrize("patch", ALL_PATCHES, ids=_IDS)
def test_the_installed_upstream_has_the_expected_shape(patch):
    """Fails loudly when the patched symbol changed shape upstream."""
    assert patch.shape(importlib.import_module(patch.module)) is None


@pytest.mark.parametrize("patch", ALL_PATCHES, ids=_IDS)
def test_every_entry_names_its_switch_and_purpose(patch):
    assert patch.purpose and patch.distribution and patch.versions
    if patch.switch is not None:
        from clstock_otel_distro import config

        assert config.SWITCHES[patch.switch] is patch.default


@pytest.mark.parametrize("patch", _REPLACING, ids=lambda p: p.name)
def test_install_applies_once_and_uninstall_restores_the_original(patch, clean_registry):
    original = _resolve(patch)
    assert registry.install(patch) is PatchState.ACTIVE
    patched = _resolve(patch)
    assert all(new is not old for new, old in zip(patched, original))
    assert registry.install(patch) is PatchState.ACTIVE  # no second wrapper
    assert all(a is b for a, b in zip(_resolve(patch), patched))
    registry.uninstall(patch)
    assert all(a is b for a, b in zip(_resolve(patch), original))
    assert registry.state_of(patch)[0] is PatchState.NOT_INSTALLED


@pytest.mark.parametrize("patch", [p for p in _REPLACING if p.switch], ids=lambda p: p.name)
def test_a_patch_switched_off_is_not_applied(patch, monkeypatch, clean_registry):
    monkeypatch.setenv(patch.switch, "false")
    original = _resolve(patch)
    assert registry.install(patch) is PatchState.OFF
    assert all(a is b for a, b in zip(_resolve(patch), original))
    assert registry.evaluate(patch) == (PatchState.OFF, f"{patch.switch}=false")


@pytest.mark.parametrize("patch", _REPLACING, ids=lambda p: p.name)
def test_outside_the_verified_range_it_stands_aside_with_one_warning(patch, monkeypatch,
                                                                     caplog, clean_registry):
    monkeypatch.setattr(registry, "installed_version", lambda distribution: "999.0")
    original = _resolve(patch)
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        state = registry.install(patch)
    assert state is PatchState.STOOD_ASIDE
    assert all(a is b for a, b in zip(_resolve(patch), original))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert patch.target in message and "999.0 is outside the verified range" in message
    assert registry.evaluate(patch)[0] is PatchState.STOOD_ASIDE


def _fake_patch(module: str, shape_problem: str | None = None) -> UpstreamPatch:
    def apply(imported: types.ModuleType):
        original = imported.target
        imported.target = lambda: "patched"
        return lambda: setattr(imported, "target", original)

    return UpstreamPatch(
        name=f"fake-{module}", distribution="pytest", module=module, symbol="target",
        versions=">=1", purpose="a test patch", shape=lambda m: shape_problem, apply=apply)


@pytest.fixture
def fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path, not imported yet, with a ``target`` function."""
    name = f"clstock_fake_upstream_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text("def target():\n    return 'original'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_patch_waits_for_its_module_and_imports_nothing(fake_module):
    patch = _fake_patch(fake_module)
    try:
        assert registry.install(patch) is PatchState.WAITING
        assert fake_module not in sys.modules
        module = importlib.import_module(fake_module)
        assert module.target() == "patched"
        assert registry.state_of(patch)[0] is PatchState.ACTIVE
    finally:
        registry.uninstall(patch)
    assert module.target() == "original"


def test_a_patch_uninstalled_before_its_import_is_never_applied(fake_module):
    patch = _fake_patch(fake_module)
    registry.install(patch)
    registry.uninstall(patch)
    assert importlib.import_module(fake_module).target() == "original"


def test_an_unexpected_shape_stands_aside_with_one_warning(fake_module, caplog):
    patch = _fake_patch(fake_module, shape_problem="target takes other arguments")
    try:
        with caplog.at_level(logging.WARNING, logger=registry.__name__):
            registry.install(patch)
            module = importlib.import_module(fake_module)
    finally:
        registry.uninstall(patch)
    assert module.target() == "original"
    assert [r.getMessage() for r in caplog.records] == [
        f"clstock-otel: {fake_module}:target left as upstream has it (a test patch): "
        "target takes other arguments"]


def test_a_patch_that_raises_leaves_the_module_as_it_was(fake_module, caplog):
    def broken(imported):
        raise RuntimeError("boom")

    patch = UpstreamPatch(name="broken", distribution="pytest", module=fake_module,
                          symbol="target", versions=">=1", purpose="a broken patch",
                          shape=lambda m: None, apply=broken)
    try:
        with caplog.at_level(logging.WARNING, logger=registry.__name__):
            registry.install(patch)
            module = importlib.import_module(fake_module)
        assert registry.state_of(patch) == (PatchState.FAILED, "RuntimeError: boom")
    finally:
        registry.uninstall(patch)
    assert module.target() == "original"
    assert len(caplog.records) == 1 and "boom" in caplog.records[0].getMessage()


def test_a_missing_distribution_stands_aside(fake_module):
    patch = _fake_patch(fake_module)
    patch = UpstreamPatch(**{**patch.__dict__, "distribution": "no-such-distribution-xyz"})
    try:
        registry.install(patch)
        assert importlib.import_module(fake_module).target() == "original"
        assert registry.state_of(patch) == (
            PatchState.STOOD_ASIDE, "no-such-distribution-xyz is not installed")
    finally:
        registry.uninstall(patch)
