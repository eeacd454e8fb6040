"""The one parser of feedback-site settings: `sites` and `beta` as given on the
command line, in a run configuration or in Python."""


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
        raise ValueError(
            f"beta must be a number or 'site=value,...' (e.g. 'stage1=0.05'). Received: {beta!r}."
        ) from None
