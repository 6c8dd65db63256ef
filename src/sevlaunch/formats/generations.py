"""The QEMU CPU model of each emulated EPYC generation, what ``-cpu host`` is on that part.

Kept apart from :mod:`sevlaunch.formats.vmsa` so a VMM learns it from the platform's profile
without building the VMSA layout classes, which only an SEV-ES launch needs.
"""

from __future__ import annotations

GENERATION_MODELS = {
    "naples": "EPYC",
    "rome": "EPYC-Rome",
    "milan": "EPYC-Milan",
    "genoa": "EPYC-Genoa",
    "turin": "EPYC-Turin",
}
