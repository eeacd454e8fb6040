"""Command-line flags made from the run configuration (`keras_sgn.config`).

Each `TrainConfig` field becomes one flag with the field's name, type, default,
choices and help text, so the tools declare none of the shared flags twice:

    from flags import config_from_flags, define_config_flags
    define_config_flags()                  # every field of TrainConfig
    ...
    config = config_from_flags()           # in main(), after parsing

Flags are attributed to the module that calls `define_config_flags` (so
`--help` of a tool lists them), not to this one.

The training tools run through `keras_sgn.cli.run_tool(main)`: a mistake the user can fix
(a bad flag value, a refused setting or output folder, a full disk, a missing dataset) is a
`keras_sgn.errors.UserError`, printed as ONE line naming the flag and the fix; anything else
is a bug and keeps its traceback.
"""

from absl import flags

# Neither imports TensorFlow: `--help` of the tools stays quick (keras_sgn.training does,
# so it is imported where a run needs it).
from keras_sgn import config as sgn_config

# Flag definitions made here belong to the calling tool (its `--help` shows them).
flags.disclaim_key_flags()

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool}


def define_config_flags(flag_values=None, include=None, exclude=(), overrides=None):
    """Define one flag per `TrainConfig` field.

    Args:
        flag_values: the `absl.flags.FlagValues` (default `absl.flags.FLAGS`).
        include: the field names to define (default: all), in any order.
        exclude: field names not to define (e.g. those the tool declares itself
            with another meaning).
        overrides: `{field: {"default"|"help"|"choices": value}}` to change a
            flag's default, help or allowed values in this tool.

    Returns the names of the flags defined (`config_from_flags` reads them).
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    overrides = dict(overrides or {})
    specs = {spec.name: spec for spec in sgn_config.field_specs()}
    unknown = sorted((set(include or ()) | set(exclude) | set(overrides)) - set(specs))
    if unknown:
        raise ValueError(f"TrainConfig has no field(s) {unknown}. Valid fields: "
                         f"{', '.join(specs)}.")
    names = [name for name in specs
             if (include is None or name in include) and name not in exclude]
    for name in names:
        spec, changes = specs[name], overrides.get(name, {})
        bad = sorted(set(changes) - {"default", "help", "choices"})
        if bad:
            raise ValueError(f"overrides[{name!r}] may set default, help and choices. "
                             f"Received: {bad}.")
        default = changes.get("default", spec.default)
        help_text = changes.get("help", spec.help)
        choices = changes.get("choices", spec.choices)
        if choices is not None and spec.type is str:
            flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=flag_values)
        else:
            _DEFINE[spec.type](name, default, help_text, flag_values=flag_values)
        flag_values[name].keras_sgn_config_field = True  # read by config_from_flags
    return tuple(names)


def config_from_flags(flag_values=None, **values):
    """The `TrainConfig` of the parsed config flags of `flag_values` (default
    `absl.flags.FLAGS`); `values` set fields directly (e.g. a field the tool
    reads from a flag of another name). Fields without a flag keep their
    `TrainConfig` default."""
    flag_values = flags.FLAGS if flag_values is None else flag_values
    # Only the flags made by define_config_flags: a tool may define a flag of a
    # field's name with another meaning (e.g. a search space of tools/tune.py).
    fields = {spec.name: flag_values[spec.name].value for spec in sgn_config.field_specs()
              if spec.name in flag_values
              and getattr(flag_values[spec.name], "keras_sgn_config_field", False)}
    return sgn_config.TrainConfig.from_dict({**fields, **values})


def define_logical_cpus_flag(flag_values=None):
    """`--logical_cpus`: split the CPU into N logical devices (apply it first
    thing in `main` with `apply_logical_cpus`)."""
    flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into N logical devices (testing "
                         "--strategy=mirrored without GPUs).",
                         flag_values=flags.FLAGS if flag_values is None else flag_values)


def apply_logical_cpus(flag_values=None):
    """Split the CPU as `--logical_cpus` asks (before any TensorFlow work)."""
    from keras_sgn.training.distribute import use_logical_cpus

    use_logical_cpus((flags.FLAGS if flag_values is None else flag_values).logical_cpus)
