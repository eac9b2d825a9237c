"""Operator tools: ``clstock-otel collect``, ``report`` and ``demo``, and what they share.

- ``collect``, ``report``, ``demo``: the commands; ``trace_tree`` prints a trace;
- ``otlp_receiver``: the embedded OTLP receiver, serving OTLP/HTTP (``otlp_http``) and
  OTLP/gRPC, decoding into the plain objects of ``otlp_data``;
- ``otlp_json``: the one OTLP JSON codec; ``spanfile``: the OTLP JSON lines file;
- ``devstack``: ClStock's services as subprocesses.

The runtime a deployment imports (distro, configurator, instrumentors, sdk, patches)
never imports this package; what only the tests and benchmarks use lives in
``tests/support``, outside the wheel.
"""
