"""Section 6: the distro's patches of other packages' code, each with its state."""

from __future__ import annotations

from clstock_otel_distro.doctor.findings import Section


def check_patches(section: Section) -> None:
    """One finding per registry entry: what it would do in this environment, and why not."""
    from clstock_otel_distro.patches import ALL_PATCHES
    from clstock_otel_distro.patches.registry import PatchState, evaluate, installed_version

    for patch in ALL_PATCHES:
        state, detail = evaluate(patch)
        version = installed_version(patch.distribution) or "not installed"
        where = f"{patch.target} ({patch.distribution} {version}, verified {patch.versions})"
        if state is PatchState.ACTIVE:
            section.ok(patch.name, f"will apply: {patch.purpose}; {where}")
        elif state is PatchState.OFF:
            section.info(patch.name, f"off ({detail}): {patch.purpose} is not done; {where}")
        else:
            section.warning(patch.name, f"will stand aside: {detail}; {patch.purpose} is not "
                            f"done; {where}")
