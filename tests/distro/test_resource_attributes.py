"""OTEL_RESOURCE_ATTRIBUTES: malformed entries give one warning naming the variable, and
the SDK sees only the well-formed ones (it would log each bad one raw, twice)."""

from __future__ import annotations

import logging

import pytest

from clstock_otel_distro import config

_VAR = "OTEL_RESOURCE_ATTRIBUTES"


@pytest.mark.parametrize(("value", "expected"), [
    ("a=1,b=2", "a=1,b=2"),
    ("  a = 1 , b=x%20y ", "a = 1 , b=x%20y"),  # well formed: unchanged (stripped)
    ("a=1,,b=2,", "a=1,,b=2,"),  # empty entries are not errors
    ("a=", "a="),  # an empty value is a value
    ("a=b=c", "a=b=c"),  # split on the first '=' only, as the SDK does
])
def test_well_formed_values_are_returned_unchanged_without_a_warning(monkeypatch, caplog,
                                                                    value, expected):
    monkeypatch.setenv(_VAR, value)
    with caplog.at_level(logging.WARNING):
        assert config.env_resource_attributes() == expected
        assert config.resource_attributes_fix() == {}
    assert caplog.records == []


def test_unset_or_blank_is_none(monkeypatch):
    assert config.env_resource_attributes() is None
    monkeypatch.setenv(_VAR, "  ")
    assert config.env_resource_attributes() is None
    assert config.resource_attributes_fix() == {}


def test_malformed_entries_are_dropped_with_one_warning(monkeypatch, caplog):
    """One WARNING naming the variable, the value and each bad entry; the good ones stay."""
    monkeypatch.setenv(_VAR, "service.namespace=shop,=,,x, =y,deployment.environment=prod")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # read again and again: still one warning
            cleaned = config.env_resource_attributes()
    assert cleaned == "service.namespace=shop,deployment.environment=prod"
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(
        f"{_VAR}='service.namespace=shop,=,,x, =y,deployment.environment=prod' is invalid")
    assert "'=' (an empty key)" in message and "'x' (no '=')" in message
    assert "'=y' (an empty key)" in message
    assert message.endswith("using the other entries instead")
    assert config.resource_attributes_fix() == {
        _VAR: "service.namespace=shop,deployment.environment=prod"}


def test_nothing_well_formed_removes_the_variable(monkeypatch, caplog):
    monkeypatch.setenv(_VAR, "=,,x")
    with caplog.at_level(logging.WARNING):
        assert config.env_resource_attributes() == ""
        assert config.resource_attribute_keys() == set()
    assert config.resource_attributes_fix() == {_VAR: None}
    assert len(caplog.records) == 1
    assert "using no attributes from it instead" in caplog.records[0].getMessage()


def test_keys_with_a_non_empty_value(monkeypatch):
    """What the configurator treats as set by the operator (service.name, instance id)."""
    monkeypatch.setenv(_VAR, "service.name=api,empty=,encoded=%20,bad,=z")
    assert config.resource_attribute_keys() == {"service.name", "encoded"}


_PRINT_RESOURCE = (
    "import os; from opentelemetry import trace; "
    "attributes = trace.get_tracer_provider().resource.attributes; "
    "print(os.environ.get('OTEL_RESOURCE_ATTRIBUTES')); "
    "print(attributes.get('team'), attributes.get('service.name'))"
)


@pytest.mark.parametrize(("value", "environ", "team"), [
    ("=,,x", "None", "None"),
    ("team=quant,=,,x", "team=quant", "quant"),
])
def test_under_opentelemetry_instrument_one_warning_and_no_sdk_lines(run_instrumented, value,
                                                                     environ, team):
    """The whole start-up logs one line about it (upstream: six raw SDK lines), and the
    well-formed entries still make the resource."""
    done = run_instrumented(_PRINT_RESOURCE, {_VAR: value, "OTEL_TRACES_EXPORTER": "console"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [environ, f"{team} clstock"]
    assert done.stderr.count(f"{_VAR}={value!r} is invalid") == 1, done.stderr
    assert "Invalid key value resource attribute pair" not in done.stderr
    assert "invalid attribute key" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
