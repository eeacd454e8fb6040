"""Names looked up in registries, with one error for a name that is not there.

Every registry of keras-sgn (methods, models, attacks, recipes, datasets, the zoo)
refuses an unknown name with the same message: what kind of thing was unknown, what
was received, the close matches and the valid names:

```
Unknown method 'sgm'. Received: method='sgm'. Did you mean 'sgn'? Valid names: 'fast', ...
```

This module imports only the standard library and `keras_sgn.errors` (no TensorFlow).
"""

import collections.abc
import difflib

from keras_sgn.errors import ArgumentError

_NOT_GIVEN = object()


def close_matches(name, names, *, n=3, cutoff=0.5, key=None):
    """The names among `names` closest to `name`, best first.

    Args:
        name: the name looked for (anything but a string has no match).
        names: the valid names.
        n: at most this many matches.
        cutoff: the least similarity (in [0, 1]) of a match.
        key: optional function applied to `name` and to every valid name before
            comparing them (e.g. `str.lower` for case-insensitive matches).

    Returns:
        A list of names from `names`.
    """
    if not isinstance(name, str):
        return []
    key = key or (lambda text: text)
    keyed = {key(valid): valid for valid in names if isinstance(valid, str)}
    return [keyed[match] for match in difflib.get_close_matches(key(name), list(keyed), n=n,
                                                                cutoff=cutoff)]


def did_you_mean(name, names, *, n=3, cutoff=0.5, key=None):
    """`"Did you mean 'a' or 'b'?"` for the close matches of `name` among `names`
    (arguments as in `close_matches`), or `""` when there is none."""
    matches = [repr(match) for match in close_matches(name, names, n=n, cutoff=cutoff, key=key)]
    if not matches:
        return ""
    if len(matches) == 1:
        return f"Did you mean {matches[0]}?"
    return f"Did you mean {', '.join(matches[:-1])} or {matches[-1]}?"


def unknown_name_message(name, names, *, kind, param="name", advice=None, prefix=None,
                         n=3, cutoff=0.5, key=None):
    """The message of an unknown `name` among `names` (arguments as in `lookup`)."""
    opening = f"unknown {kind} {name!r}."
    opening = f"{prefix}: {opening}" if prefix else opening[0].upper() + opening[1:]
    parts = [opening, f"Received: {param}={name!r}."]
    parts.append(did_you_mean(name, names, n=n, cutoff=cutoff, key=key))
    valid = sorted(str(valid) for valid in names)
    parts.append(f"Valid names: {', '.join(repr(v) for v in valid)}." if valid
                 else f"No {kind} is registered.")
    parts.append(advice or "")
    return " ".join(part for part in parts if part)


def lookup(mapping, name, *, kind, param="name", error=ArgumentError, advice=None, prefix=None,
           n=3, cutoff=0.5, key=None):
    """`mapping[name]`, or an error naming the close matches and the valid names.

    Args:
        mapping: the registry, any mapping of names to values.
        name: the name looked up.
        kind: what the values are, for the message (`"method"`, `"pretrained model"`).
        param: the parameter that received `name`, for the message's
            `Received: <param>=<name>.`
        error: the class of the error raised.
        advice: an optional sentence ending the message (e.g. where to register one).
        prefix: an optional word starting the message, as in
            `"attacks: unknown attack 'x'."`.
        n, cutoff, key: the close matches' settings (see `close_matches`).

    Returns:
        The value registered under `name`.

    Raises:
        error: `name` is not in `mapping`.

    Example:

    ```python
    lookup({"sgn": 1, "pgd": 2}, "sgm", kind="method", param="method")
    # ArgumentError: Unknown method 'sgm'. Received: method='sgm'. Did you mean 'sgn'?
    # Valid names: 'pgd', 'sgn'.
    ```
    """
    try:
        return mapping[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        pass
    raise error(unknown_name_message(name, list(mapping), kind=kind, param=param, advice=advice,
                                     prefix=prefix, n=n, cutoff=cutoff, key=key))


class Registry(collections.abc.Mapping):
    """Values by name: a read-only mapping that grows only through `register`.

    Args:
        kind: what the values are, for messages (`"method"`, `"model"`).
        items: optional `{name: value}` registered first, in order.
        param: the parameter that takes a name where the registry is used, for the
            unknown-name message (`get`).
        advice: an optional sentence ending the unknown-name message.
        error: the class of the errors raised (a subclass of `ArgumentError` is usual).

    Example:

    ```python
    backbones = Registry("model", param="model")
    backbones.register("tiny_cnn", build_tiny_cnn)
    backbones.get("tiny_cnn")   # build_tiny_cnn
    backbones.get("tiny_cn")    # ArgumentError: ... Did you mean 'tiny_cnn'? ...
    ```
    """

    def __init__(self, kind, items=None, *, param="name", advice=None, error=ArgumentError):
        self.kind = kind
        self.param = param
        self.advice = advice
        self.error = error
        self._items = {}
        for name, value in dict(items or {}).items():
            self.register(name, value)

    def __getitem__(self, name):
        return self._items[name]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Registry({self.kind!r}, names={self.names()})"

    def register(self, name, value):
        """Make `value` available as `get(name)`; returns `value`.

        Raises:
            error: `name` is not a non-empty string, or is taken.
        """
        if not isinstance(name, str) or not name:
            raise self.error(f"A {self.kind} name must be a non-empty string. "
                             f"Received: name={name!r}.")
        if name in self._items:
            raise self.error(f"A {self.kind} named {name!r} is already registered. "
                             f"Received: name={name!r}. Choose a new name; taken names: "
                             f"{', '.join(repr(taken) for taken in self.names())}.")
        self._items[name] = value
        return value

    def get(self, name, default=_NOT_GIVEN):
        """The value registered as `name`. An unknown name raises the error listing
        close matches and the valid names, unless a `default` is given (then it is
        returned, as `Mapping.get` does)."""
        if default is not _NOT_GIVEN:
            try:
                return self._items.get(name, default)
            except TypeError:  # an unhashable name
                return default
        return lookup(self._items, name, kind=self.kind, param=self.param, error=self.error,
                      advice=self.advice)

    def names(self):
        """The registered names, sorted."""
        return sorted(self._items)

    def copy(self):
        """A new registry with the same settings and values (registering in one does
        not change the other)."""
        return Registry(self.kind, self._items, param=self.param, advice=self.advice,
                        error=self.error)
