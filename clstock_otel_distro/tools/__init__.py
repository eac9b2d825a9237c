"""Operator tools (collect, report, demo, the OTLP receiver and its file format).

The runtime a deployment imports (distro, configurator, instrumentors, sdk, patches)
never imports this package.
"""
