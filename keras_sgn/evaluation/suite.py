"""The attack suite evaluation runs: names, typed options and presets live in
`keras_sgn.attacks.registry` (one table for every caller); this module is
where evaluation imports them from.

Presets, as AutoAttack names them: `standard` (APGD-CE, APGD-T, FAB-T,
Square-5000, 100 iterations each), `plus`, and `quick` (APGD-CE + APGD-T).
"""

from keras_sgn.attacks import registry
from keras_sgn.attacks.registry import (  # noqa: F401
    ATTACKS,
    PRESETS,
    AttackSpec,
    get,
    parse_attack,
)
from keras_sgn.errors import checked_arguments


def parse_attacks(attack_list):
    """`keras_sgn.attacks.registry.parse_attacks`, a refused list raised as an
    `ArgumentError` (the tools print it as one line)."""
    with checked_arguments():
        return registry.parse_attacks(attack_list)
