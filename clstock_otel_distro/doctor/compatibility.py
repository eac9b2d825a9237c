"""What the other installed OpenTelemetry packages do to a ClStock trace.

``opentelemetry-bootstrap -a install`` adds an instrumentation for every library it
finds; installing the upstream ``opentelemetry-distro`` beside ours can move
``opentelemetry-instrumentation`` past what those instrumentations pin. The doctor
says what each known instrumentation will do here, which installed packages' pins
are not met (what ``pip check`` would say), and what upstream's "already loaded"
start-up line means.
"""

from __future__ import annotations

from clstock_otel_distro.doctor.findings import Section

# Third-party instrumentations bootstrap installs for ClStock, and what each does
# to a ClStock trace when loaded (click and sqlite3: instrumentation_policy).
# instrumentation_policy.WAITS_FOR_IMPORT: loading one imports grpc.
_WAITS_FOR_GRPC = ("; instrumented only once the application imports grpc "
                   "(no memory for it otherwise)")
EFFECTS = {
    "starlette": "none for ClStock's FastAPI apps: the fastapi instrumentation makes their "
                 "server spans (one per request)",
    "asyncio": "spans only for the coroutines and to_thread functions named in "
               "OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE / "
               "OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE (none by default)",
    "urllib3": "CLIENT spans for direct urllib3 calls; calls made through requests are traced "
               "once, by the requests instrumentation",
    "urllib": "CLIENT spans for urllib.request calls (ClStock makes none)",
    "tortoiseorm": "spans for Tortoise ORM queries (ClStock uses no ORM)",
    "exceptions": "a log record for each uncaught exception, exported when "
                  "OTEL_LOGS_EXPORTER is set",
    "grpc_client": "CLIENT spans for gRPC calls (the OTLP exporter's own are not traced)"
                   f"{_WAITS_FOR_GRPC}",
    "grpc_server": f"SERVER spans for gRPC servers (ClStock runs none){_WAITS_FOR_GRPC}",
    "grpc_aio_client": f"CLIENT spans for asyncio gRPC calls{_WAITS_FOR_GRPC}",
    "grpc_aio_server": "SERVER spans for asyncio gRPC servers (ClStock runs none)"
                       f"{_WAITS_FOR_GRPC}",
}

_UPSTREAM_DISTRO = "opentelemetry-distro"


def effect(name: str) -> str | None:
    """What a loaded instrumentation ``name`` does to a ClStock trace, when known."""
    return EFFECTS.get(name)


def left_out_detail(name: str) -> str | None:
    """Why the distro leaves ``name`` out of ClStock's server processes, if it does."""
    from clstock_otel_distro.instrumentation_policy import left_out

    policy = left_out(name, server=True)
    if policy is None:
        return None
    where = " in server processes (uvicorn, gunicorn...)" if policy.servers_only else ""
    return f"left out by clstock-otel-distro{where}: {policy.why}; {policy.switch}=true loads it"


def installed_distributions() -> list:
    from importlib import metadata

    return list(metadata.distributions())


def _unmet_requirements() -> list[str]:
    """``pip check``'s findings among the installed opentelemetry-* distributions."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    installed = {}
    for dist in installed_distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        installed[name] = dist
    problems = []
    for name, dist in sorted(installed.items()):
        if not (name.startswith("opentelemetry-") or name == "clstock-otel-distro"):
            continue
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            wanted = requirement.name.lower().replace("_", "-")
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if not wanted.startswith("opentelemetry-") or wanted not in installed:
                continue
            have = installed[wanted].version
            try:
                met = requirement.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                continue
            if not met:
                problems.append(f"{name} {dist.version} requires {requirement}, "
                                f"but {wanted} {have} is installed")
    return problems


def check_version_conflicts(section: Section) -> None:
    problems = _unmet_requirements()
    if not problems:
        section.ok("versions", "every installed OpenTelemetry package's requirements are met")
        return
    for problem in problems:
        section.warning(
            "versions", problem,
            "install matching versions (pip install 'opentelemetry-instrumentation==<the pinned "
            "version>'), or uninstall what is not needed; `pip check` lists the same")


def explain_upstream_distro(section: Section) -> None:
    """Upstream's distro beside ours: its start-up line, and how to pin ours."""
    from importlib import metadata

    try:
        version = metadata.version(_UPSTREAM_DISTRO)
    except metadata.PackageNotFoundError:
        return
    section.info(
        _UPSTREAM_DISTRO,
        f"{_UPSTREAM_DISTRO} {version} is installed beside clstock-otel-distro: at every start "
        "opentelemetry-instrument logs \"Configuration of configurator not loaded, clstock "
        "already loaded\": only one configurator runs, and ours did; harmless",
        "pin ours explicitly with OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock, "
        f"or pip uninstall {_UPSTREAM_DISTRO} (it also upgrades opentelemetry-instrumentation "
        "past what the installed instrumentations pin)",
    )
