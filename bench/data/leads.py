"""Lead names: the standard 12-lead order and tolerant matching of the spellings datasets use."""

from __future__ import annotations

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

_CANONICAL = {lead.upper(): lead for lead in STANDARD_LEADS}


def canonical_lead(name: str) -> str:
    """Map 'AVR', 'avr', ' aVR ' and the like to the standard spelling; unknown names pass through."""
    return _CANONICAL.get(name.strip().upper(), name.strip())


FULL_SET = "12"


def lead_set(name: str) -> tuple[str, ...]:
    """The leads of an evaluation lead set: a name of configs/protocols/lead_sets.yaml (12, 6, 4, 3, 2) or one standard
    lead (I, II, ..., V6, in any spelling)."""
    import yaml

    from bench import REPO_ROOT
    from bench.config import ConfigError

    sets = yaml.safe_load((REPO_ROOT / "configs" / "protocols" / "lead_sets.yaml").read_text())["sets"]
    name = str(name).strip()
    if name in sets:
        return tuple(sets[name])
    if canonical_lead(name) in STANDARD_LEADS:
        return (canonical_lead(name),)
    raise ConfigError(f"lead set {name!r} is neither a named set ({', '.join(sets)}) nor a standard lead "
                      f"({', '.join(STANDARD_LEADS)}) (fix: e.g. --leads 12,6,2,I)")


def lead_set_name(name: str) -> str:
    """The name a lead set is tabled under: a named set as written, a single lead in its standard spelling."""
    name = str(name).strip()
    lead_set(name)
    return canonical_lead(name) if canonical_lead(name) in STANDARD_LEADS else name
