"""Tests of keras_sgn.models.sites: the one parser of `sites`/`beta` settings
and their resolution against a network's stages."""

import keras
import pytest

from keras_sgn.layers import SelfGradient
from keras_sgn.models.sites import (
    DEFAULT_BETA,
    SitePlacer,
    parse_beta,
    parse_sites,
    resolve_sites,
    stage_names,
    strip_site_prefix,
)
from tests.testing import run_bad_argument_test


def test_parse_sites_spellings():
    assert parse_sites("default") == "default"
    assert parse_sites("none") == parse_sites("") == parse_sites(None) == ()
    assert parse_sites("input, stage2") == ("input", "stage2")
    assert parse_sites(" stage1,,stage3 ") == ("stage1", "stage3")
    assert parse_sites(["stage1"]) == ("stage1",)


def test_parse_beta_spellings():
    assert parse_beta("0.05") == 0.05
    assert parse_beta(0.2) == 0.2
    assert parse_beta("stage1=0.01, stage2=0.2") == {"stage1": 0.01, "stage2": 0.2}
    assert parse_beta({"stage1": 0.3}) == {"stage1": 0.3}
    run_bad_argument_test(parse_beta, dict(beta="stage1=big"), "beta", match="stage1=0.05")


def test_stage_names_and_prefix():
    assert stage_names(3) == ("input", "stage1", "stage2", "stage3")
    assert strip_site_prefix("site_stage2") == "stage2"
    assert strip_site_prefix("stage2") == "stage2"


def test_resolve_sites_network_order_and_betas():
    resolved = resolve_sites(["stage3", "site_input", "stage1"], {"site_stage3": 0.5}, 4)
    assert list(resolved.items()) == [("input", None), ("stage1", DEFAULT_BETA),
                                      ("stage3", 0.5)]
    assert resolve_sites("default", 0.1, 2) == {"input": None, "stage1": 0.1, "stage2": 0.1}
    # Strings are read by parse_sites, so the command line and Python agree.
    assert resolve_sites("stage2, input", 0.3, 2) == resolve_sites(("input", "stage2"), 0.3, 2)
    for plain in ("none", "NONE", " None ", "", None, (), []):
        assert resolve_sites(plain, 0.1, 3) == {}
    assert isinstance(resolve_sites("stage1", 1, 1)["stage1"], float)


@pytest.mark.parametrize("sites, beta, param, match", [
    ("stage5", 0.1, "sites", r"'stage5'.*stage4"),
    (5, 0.1, "sites", "Valid names"),
    ("default", {"input": 0.1}, "beta", "takes no beta"),
    (["stage1"], {"stage2": 0.1}, "beta", "not selected"),
    ("default", float("nan"), "beta", "finite"),
    ("default", True, "beta", ">= 0"),
])
def test_resolve_sites_errors(sites, beta, param, match):
    run_bad_argument_test(resolve_sites, dict(sites=sites, beta=beta, num_stages=4), param,
                          match=match)


def test_site_placer_adds_only_selected_sites():
    placer = SitePlacer({"input": None, "stage2": 0.3}, "sign")
    marker = object()
    assert placer(marker, "stage1") is marker  # not selected: the tensor passes untouched
    x = keras.Input((4,))
    out = placer(x, "stage2")
    layer = out._keras_history.operation
    assert isinstance(layer, SelfGradient)
    assert (layer.name, layer.beta, layer.normalization, layer.input_site) == (
        "site_stage2", 0.3, "sign", False)
    assert placer(x, "input")._keras_history.operation.input_site

