"""What only the tests and the benchmarks use, kept out of the wheel.

- :mod:`tests.support.receiver`: the OTLP receiver with the tests' reading and waiting API;
- :mod:`tests.support.processes`: gunicorn-served ClStock and what a clean exit looks like;
- :mod:`tests.support.upstream`: the upstream opentelemetry-distro, installed beside the
  virtualenv for the co-installation tests and the benchmarks' comparison;
- :mod:`tests.support.otel_testing`: in-memory SDK providers for unit tests.
"""
