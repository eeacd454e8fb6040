"""Command-line flags made from the run configuration (`keras_sgn.config`).

Each `TrainConfig` field becomes one flag with the field's name, type, default,
choices and help text, and so does each method option declared in
`keras_sgn.method_options` (`--free_replays`, `--trades_beta`...: its help names the
methods that take it), so the tools declare none of the shared flags twice:

    from flags import config_from_flags, define_config_flags
    define_config_flags()                  # every field of TrainConfig, every method option
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

# None imports TensorFlow: `--help` of the tools stays quick (keras_sgn.training does,
# so it is imported where a run needs it).
from keras_sgn import config as sgn_config
from keras_sgn import method_options

# Flag definitions made here belong to the calling tool (its `--help` shows them).
flags.disclaim_key_flags()

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool}


def _flag_specs():
    """`{flag name: FieldSpec}` of the config flags: the `TrainConfig` fields (but
    `options`, whose entries are flags of their own), then the declared method options."""
    specs = {spec.name: spec for spec in sgn_config.field_specs() if spec.name != "options"}
    for option in method_options.declared():
        specs[option.field] = sgn_config.FieldSpec(
            name=option.field, type=option.type, default=option.default, group="method",
            recipe=True, resumable=False, help=method_options.flag_help(option),
            choices=option.choices)
    return specs


def define_config_flags(flag_values=None, include=None, exclude=(), overrides=None):
    """Define one flag per `TrainConfig` field and per declared method option.

    Args:
        flag_values: the `absl.flags.FlagValues` (default `absl.flags.FLAGS`).
        include: the field (or option) names to define (default: all), in any order.
        exclude: names not to define (e.g. those the tool declares itself
            with another meaning).
        overrides: `{field: {"default"|"help"|"choices": value}}` to change a
            flag's default, help or allowed values in this tool.

    Returns the names of the flags defined (`config_from_flags` reads them).
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    overrides = dict(overrides or {})
    specs = _flag_specs()
    unknown = sorted((set(include or ()) | set(exclude) | set(overrides)) - set(specs))
    if unknown:
        raise ValueError(f"TrainConfig has no field(s) or method option(s) {unknown}. Valid: "
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
    `TrainConfig` default.

    The method option flags set `options` for the ones the run's method (or finish
    method) takes; one given explicitly for another method is refused (a
    `ConfigError` naming the flag), as it would be ignored."""
    flag_values = flags.FLAGS if flag_values is None else flag_values
    # Only the flags made by define_config_flags: a tool may define a flag of a
    # field's name with another meaning (e.g. a search space of tools/tune.py).
    given = {name: flag_values[name] for name in _flag_specs()
             if name in flag_values
             and getattr(flag_values[name], "keras_sgn_config_field", False)}
    fields = {name: flag.value for name, flag in given.items()
              if name not in _option_fields()}
    fields.update(values)
    method = fields.get("method", sgn_config.TrainConfig.method)
    finish_method = fields.get("finish_method")
    taken = {option.field for option in method_options.options_of(method, finish_method)}
    options = {}
    for name, flag in given.items():
        if name not in _option_fields() or name in values:
            continue
        if name in taken:
            options[name] = flag.value
        elif flag.present:
            raise sgn_config.foreign_option_error(name, flag.value, method, finish_method,
                                                  flags=True)
    return sgn_config.TrainConfig.from_dict(
        {**fields, "options": {**options, **fields.get("options", {})}})


def _option_fields():
    return {option.field for option in method_options.declared()}


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
