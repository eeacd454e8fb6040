"""The attack registry: every attack an evaluation can run, by name, with typed options.

An attack is named like `"apgd-ce"`, `"fab-t"` or `"square"`, with options
after a colon: `"apgd-ce:steps=50,restarts=2"`. Each registered attack declares
its options with a typed default and the values it accepts, so a misspelled
option or a bad value fails when the list is parsed, before any attack runs,
with an error that names the attack, the option and the valid choices.

Presets, as AutoAttack names them (Croce & Hein 2020):

* `standard`: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000
  queries), 100 iterations each;
* `plus`: APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square,
  APGD-T and FAB-T (9 targets each);
* `quick`: APGD-CE and APGD-T, the first two attacks of `standard`.

Example:

```python
spec = registry.parse_attack("apgd-ce:steps=50,restarts=2")
x_adv = spec.run(model, x, y, epsilon=8 / 255, norm="linf", seed=0)
specs = registry.parse_attacks("standard")
```
"""

import dataclasses
import numbers

from keras_sgn.attacks.apgd import apgd
from keras_sgn.attacks.core import fgsm, pgd
from keras_sgn.attacks.fab import fab
from keras_sgn.attacks.square import square
from keras_sgn.errors import ArgumentError
from keras_sgn.registry import lookup


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of an attack: its default, type, and the values it accepts.

    `rule` says in words what `valid` checks (it goes into error messages);
    `allow_none` lets the option be `None` (e.g. "use the attack's default").
    """

    default: object
    value_type: type
    valid: object = None
    rule: str = ""
    allow_none: bool = False

    def coerce(self, value):
        """`value` (text from a spec string, or a Python value) as this option's
        type; raises ValueError (message: what is expected) if it is not valid."""
        if isinstance(value, str):
            value = _from_text(value.strip(), self.value_type, self.allow_none, self.expected())
        if value is None and self.allow_none:
            return None
        value = _as_type(value, self.value_type)
        if value is None or self.valid is not None and not self.valid(value):
            raise ArgumentError(self.expected())
        return value

    def expected(self):
        text = self.rule or _TYPE_WORDS.get(self.value_type, f"a {self.value_type.__name__}")
        return text + (" or None" if self.allow_none else "")


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _as_type(value, value_type):
    """`value` as `value_type` when it is one already (any integer for int, any
    real number for float), else None. Booleans are never numbers here."""
    if isinstance(value, bool) or value_type is bool:
        return value if isinstance(value, bool) and value_type is bool else None
    if value_type is int and isinstance(value, numbers.Integral):
        return int(value)
    if value_type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if value_type is float and isinstance(value, numbers.Real):
        return float(value)
    return value if isinstance(value, value_type) else None


def _from_text(text, value_type, allow_none, expected):
    if allow_none and text.lower() == "none":
        return None
    if value_type is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ArgumentError(expected)
    try:
        return value_type(text)
    except ValueError:
        raise ArgumentError(expected) from None


def _count(default):
    return Option(default, int, lambda v: v >= 1, "an integer >= 1")


def _fraction(default, rule="a number in [0, 1]", valid=lambda v: 0.0 <= v <= 1.0):
    return Option(default, float, valid, rule)


def _loss(default, choices):
    return Option(default, str, lambda v: v in choices, "one of " + ", ".join(choices))


@dataclasses.dataclass(frozen=True)
class Attack:
    """A registered attack.

    `runner(model, x, y, *, epsilon, norm, seed, **options)` returns the
    adversarial images; `options` maps each option name to its `Option`;
    `iteration_option` is the option counting its iterations (for timing), or
    None for a single-step attack.
    """

    name: str
    kind: str
    runner: object
    options: dict
    iteration_option: str = None
    description: str = ""

    def defaults(self):
        return {key: option.default for key, option in self.options.items()}

    def check_options(self, options):
        """Typed, validated options; errors name the attack, the option and the valid ones."""
        checked = {}
        for key, value in options.items():
            if key not in self.options:
                valid = ", ".join(self.options) or "none"
                raise ArgumentError(
                    f"attacks: unknown option {key!r} of attack {self.name!r}. Valid options: "
                    f"{valid}. Received: {key}={value!r}.")
            try:
                checked[key] = self.options[key].coerce(value)
            except ValueError as error:
                raise ArgumentError(
                    f"attacks: option {key!r} of attack {self.name!r} must be {error}. "
                    f"Received: {key}={value!r}.") from None
        return checked


ATTACKS = {}


def register(name, runner, kind, options, iteration_option=None, description=""):
    """Add an attack to the registry (`name` must be new); returns the `Attack`."""
    if name in ATTACKS:
        raise ArgumentError(f"attacks: an attack named {name!r} is already registered.")
    if ";" in name or ":" in name or "," in name:
        raise ArgumentError(f"attacks: name {name!r} must not contain ';', ':' or ','.")
    ATTACKS[name] = Attack(name, kind, runner, dict(options), iteration_option, description)
    return ATTACKS[name]


def get(name):
    """The registered `Attack` called `name` (close matches in the error)."""
    return lookup(ATTACKS, name, kind="attack", prefix="attacks",
                  advice=f"Or a preset ({', '.join(PRESETS)}). Options go after a colon, e.g. "
                  "'pgd-cw:steps=50,restarts=5'; separate attacks with ';'.")


def _with(function, **fixed):
    """A runner calling `function` with some arguments fixed by the attack's name."""
    def run(model, x, y, *, epsilon, norm, seed, **options):
        return function(model, x, y, epsilon=epsilon, norm=norm, seed=seed, **fixed, **options)

    return run


def _register_defaults():
    pgd_options = dict(steps=_count(20), restarts=_count(1), random_start=Option(True, bool),
                       step_size=Option(None, float, lambda v: v > 0, "a number > 0",
                                        allow_none=True))
    apgd_options = dict(steps=_count(100), restarts=_count(1), rho=_fraction(0.75))
    fab_options = dict(steps=_count(100), restarts=_count(1), alpha_max=_fraction(0.1),
                       eta=Option(1.05, float, lambda v: v >= 1.0, "a number >= 1"),
                       beta=_fraction(0.9, "a number in (0, 1]", lambda v: 0.0 < v <= 1.0))
    register("fgsm", fgsm, "single-step",
             dict(loss=_loss("ce", ("ce", "cw")), random_start=Option(False, bool)),
             description="one signed-gradient step (FGSM-RS with random_start)")
    register("pgd", pgd, "white-box", dict(pgd_options, loss=_loss("ce", ("ce", "cw"))),
             "steps", "PGD (Madry et al. 2018), loss chosen by option")
    for loss in ("ce", "cw"):
        register(f"pgd-{loss}", _with(pgd, loss=loss), "white-box", pgd_options, "steps",
                 f"PGD on the {loss} loss")
    for loss in ("ce", "dlr"):
        register(f"apgd-{loss}", _with(apgd, loss=loss), "white-box", apgd_options, "steps",
                 f"Auto-PGD on the {loss} loss")
    register("apgd-t", _with(apgd, loss="dlr", targeted=True), "white-box",
             dict(apgd_options, n_target_classes=_count(9)), "steps",
             "Auto-PGD on the targeted DLR loss, once per target class")
    register("fab", _with(fab), "white-box", fab_options, "steps",
             "FAB, minimal-perturbation attack (Croce & Hein 2020)")
    register("fab-t", _with(fab, targeted=True), "white-box",
             dict(fab_options, n_target_classes=_count(9)), "steps",
             "FAB-T, once per target class")
    register("square", square, "gradient-free",
             dict(n_queries=_count(5000),
                  p_init=_fraction(0.8, "a number in (0, 1]", lambda v: 0.0 < v <= 1.0)),
             "n_queries", "Square Attack, score-based random search")


_register_defaults()

PRESETS = {
    # AutoAttack's `standard` version, 100 iterations each.
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    # AutoAttack's `plus` version, in its order and with its restarts.
    "plus": ("apgd-ce:restarts=5", "apgd-dlr:restarts=5", "fab:restarts=5", "square", "apgd-t",
             "fab-t"),
    # The first two attacks of `standard`: for training-time and per-epoch numbers.
    "quick": ("apgd-ce", "apgd-t"),
}


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: a registered name and its options (typed and checked
    when the spec is made), or a custom attack `fn(model, x, y, epsilon, norm,
    seed) -> x_adv` under any name."""

    name: str
    options: tuple = ()
    fn: object = None

    def __post_init__(self):
        if self.fn is None:
            checked = get(self.name).check_options(dict(self.options))
            object.__setattr__(self, "options", tuple(checked.items()))

    @property
    def kind(self):
        return get(self.name).kind if self.fn is None else "custom"

    @property
    def label(self):
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options)

    def settings(self):
        """Every option's value: the defaults updated with the given options."""
        defaults = get(self.name).defaults() if self.fn is None else {}
        return {**defaults, **dict(self.options)}

    def run(self, model, x, y, epsilon, norm, seed=0):
        """Adversarial versions of `x` under this attack."""
        if self.fn is not None:
            return self.fn(model, x, y, epsilon, norm, seed)
        return get(self.name).runner(model, x, y, epsilon=epsilon, norm=norm, seed=seed,
                                     **self.settings())


def parse_attack(text):
    """`"name"` or `"name:key=value,..."` -> `AttackSpec`, options typed and checked."""
    if isinstance(text, AttackSpec):
        return text
    name, _, option_text = text.partition(":")
    name = name.strip()
    attack = get(name)
    options = {}
    for pair in filter(None, (p.strip() for p in option_text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ArgumentError(f"attacks: option {pair!r} of attack {name!r} must look like "
                             f"key=value. Valid options: {', '.join(attack.options)}.")
        options[key.strip()] = value
    return AttackSpec(name, tuple(options.items()))


def parse_attacks(attack_list):
    """A preset name (`"quick"`, `"standard"`, `"plus"`), a string of attacks separated
    by `;` (`"pgd-ce;square:n_queries=1000"`), or a list of names / `AttackSpec`s
    -> a tuple of `AttackSpec`, every option checked now."""
    if isinstance(attack_list, str):
        if attack_list.strip() in PRESETS:
            attack_list = PRESETS[attack_list.strip()]
        else:
            attack_list = [a for a in attack_list.split(";") if a.strip()]
    specs = tuple(parse_attack(item) for item in attack_list)
    if not specs:
        raise ArgumentError("attacks: give at least one attack or a preset "
                         f"({', '.join(PRESETS)}). Received: {attack_list!r}.")
    return specs
