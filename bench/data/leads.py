"""Lead names: the standard 12-lead order and tolerant matching of the spellings datasets use."""

from __future__ import annotations

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

_CANONICAL = {lead.upper(): lead for lead in STANDARD_LEADS}


def canonical_lead(name: str) -> str:
    """Map 'AVR', 'avr', ' aVR ' and the like to the standard spelling; unknown names pass through."""
    return _CANONICAL.get(name.strip().upper(), name.strip())
