"""Feedback sites: the one parser of `sites`/`beta` settings, their resolution
against a network's stages, and the placing of `SelfGradient` layers.

`sites` and `beta` arrive as strings (command line, run configuration) or as
Python values. `parse_sites`/`parse_beta` turn the strings into values;
`resolve_sites` checks them against a network with `num_stages` stages and
returns `{site: beta}`; `SitePlacer` puts the layers in while a builder runs.
"""

import math
import numbers

from keras_sgn.errors import ArgumentError
from keras_sgn.layers import SelfGradient

SITE_PREFIX = "site_"
INPUT_SITE = "input"
DEFAULT_BETA = 0.01  # measured on digits (see README); a fraction of the activation norm


def parse_sites(sites):
    """`"default"`, `"none"` or a comma list such as `"input,stage1,stage3"`."""
    if isinstance(sites, (list, tuple)):
        return tuple(sites)
    if sites in (None, "", "none"):
        return ()
    if sites == "default":
        return "default"
    return tuple(s.strip() for s in sites.split(",") if s.strip())


def parse_beta(beta):
    """A float (`"0.1"`) or per-site values (`"stage1=0.05,stage2=0.1"`)."""
    if isinstance(beta, (int, float, dict)):
        return beta
    try:
        if "=" not in beta:
            return float(beta)
        return {k.strip(): float(v) for k, v in (item.split("=") for item in beta.split(","))}
    except ValueError:
        raise ArgumentError(
            f"beta must be a number or 'site=value,...' (e.g. 'stage1=0.05'). Received: {beta!r}."
        ) from None


def stage_names(num_stages):
    """Valid site names of a network with `num_stages` stages, in order."""
    return (INPUT_SITE,) + tuple(f"stage{i}" for i in range(1, num_stages + 1))


def strip_site_prefix(site):
    """`"site_stage1"` -> `"stage1"`; names without the prefix are returned as they are."""
    if isinstance(site, str) and site.startswith(SITE_PREFIX):
        return site[len(SITE_PREFIX):]
    return site


def _selected_sites(sites, valid):
    """The site names asked for, in the order given, without the prefix."""
    if isinstance(sites, str) and sites.strip().lower() == "none":
        sites = None  # any spelling of "none" on the command line
    if sites is None or isinstance(sites, str):
        selected = parse_sites(sites)
    else:
        try:
            selected = tuple(sites)
        except TypeError:
            raise ArgumentError(
                "sites must be 'default', a list of site names, or () / None for the plain "
                f"network. Received: sites={sites!r}. Valid names: {list(valid)}."
            ) from None
    if selected == "default":
        return valid
    selected = tuple(strip_site_prefix(s) for s in selected)
    unknown = [s for s in selected if s not in valid]
    if unknown:
        raise ArgumentError(
            f"sites: unknown site name(s) {unknown}. Received: sites={sites!r}. Valid names "
            f"for this network: {list(valid)} (or 'default' for all of them, () for none)."
        )
    return selected


def _hidden_betas(beta, hidden, valid):
    """`{hidden_site: beta}` from one number or a per-site dict."""
    if not isinstance(beta, dict):
        return {s: beta for s in hidden}
    beta_map = {strip_site_prefix(k): v for k, v in beta.items()}
    if INPUT_SITE in beta_map:
        raise ArgumentError(
            "beta: the 'input' site takes no beta (its step is the training "
            f"method's alpha, projected to the threat model). Received: beta={beta!r}. "
            f"Give beta only for the selected hidden sites: {hidden}."
        )
    extra = [k for k in beta_map if k not in hidden]
    if extra:
        raise ArgumentError(
            f"beta: key(s) {extra} are not selected hidden sites. Received: beta={beta!r}. "
            f"Selected hidden sites: {hidden}; all valid names: {list(valid[1:])}."
        )
    return {s: beta_map.get(s, DEFAULT_BETA) for s in hidden}


def resolve_sites(sites, beta, num_stages):
    """Validate `sites`/`beta`; return `{site_name: beta}` in network order.

    The input site's value is `None` (its step is the training method's
    `alpha`, not a `beta`). Names may be given with or without the
    `SITE_PREFIX` (`"stage1"` or `"site_stage1"`); `sites` may also be a
    string as `parse_sites` reads it (`"default"`, `"none"`, `"input,stage2"`).
    """
    valid = stage_names(num_stages)
    selected = _selected_sites(sites, valid)
    chosen = [s for s in valid if s in selected]
    hidden = [s for s in chosen if s != INPUT_SITE]
    betas = _hidden_betas(beta, hidden, valid)
    for site, value in betas.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ArgumentError(
                f"beta for site {site!r} must be a finite number >= 0. Received: "
                f"beta={value!r}. Use 0 to keep the site without feedback."
            )
    return {s: (None if s == INPUT_SITE else float(betas[s])) for s in chosen}


class SitePlacer:
    """Places the selected `SelfGradient` layers while a network is built.

    Call it on a tensor with a site name: it returns the tensor unchanged when
    that site is not selected, else the output of a new `SelfGradient` layer
    named `SITE_PREFIX + site`.

    Args:
        resolved: `{site_name: beta}` from `resolve_sites`.
        normalization: gradient normalisation of the hidden sites.
    """

    def __init__(self, resolved, normalization):
        self.resolved = dict(resolved)
        self.normalization = normalization

    def __call__(self, x, site):
        if site not in self.resolved:
            return x
        if site == INPUT_SITE:
            layer = SelfGradient(input_site=True, name=SITE_PREFIX + INPUT_SITE)
        else:
            layer = SelfGradient(
                beta=self.resolved[site],
                normalization=self.normalization,
                name=SITE_PREFIX + site,
            )
        return layer(x)
