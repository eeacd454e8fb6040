"""The attack suite evaluation runs: names, typed options and presets live in
`keras_sgn.attacks.registry` (one table for every caller); this module is
where evaluation imports them from.

Presets, as AutoAttack names them: `standard` (APGD-CE, APGD-T, FAB-T,
Square-5000, 100 iterations each), `plus`, and `quick` (APGD-CE + APGD-T).
"""

from keras_sgn.attacks.registry import (  # noqa: F401
    ATTACKS,
    PRESETS,
    AttackSpec,
    get,
    parse_attack,
    parse_attacks,
)
