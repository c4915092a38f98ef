"""Whatever text comes in, parsing either succeeds or raises paramspec's own SpecError."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import paramspec as ps
from paramspec._parse import build_parser

# Random specs (fixed learning rates among them) may be unstable for their optimizer:
# that is expected here, not a reason to warn.
pytestmark = [pytest.mark.property,
              pytest.mark.filterwarnings("ignore::paramspec.UnstableSpecWarning")]


def _parse_and_compile(text):
    try:
        spec = ps.parse(text)
        ps.compile(spec, width=64)
    except ps.SpecError as e:
        message = str(e)
        assert message.startswith("error: ") and "Traceback" not in message


@given(st.text(max_size=200))
def test_random_text_raises_only_spec_errors(text):
    _parse_and_compile(text)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_spec_errors(data):
    _parse_and_compile(data)


TOKENS = ["spec", "x", "hidden", "readout", "embedding", "norms", "{", "}", "\n", " ", "lr",
          "init", "multiplier", "eps", "wd", "role", "match", "allow", "auto", "keep", "n",
          "fan_in", "fan_out", "align", "^", "(", ")", "-", "+", "*", "/", "1", "2", "0.5",
          "1e-8", "=", ",", '"d"', "#c", "extends", "mup", "optimizer", "adam", "alignment",
          "full", "none", "base_width", "vector", "unstable_init", "module=Linear",
          "attention", "logits", "head_dim", "head_n"]


@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup_raises_only_spec_errors(tokens):
    _parse_and_compile(" ".join(tokens))


@settings(suppress_health_check=list(HealthCheck))
@given(from_lark(build_parser(), start="start",
                 explicit={"_NL": st.just("\n"), "STRING": st.just('"doc"'),
                           "NAME": st.sampled_from(["n", "x", "hidden", "lr", "auto", "align",
                                                    "role", "vector", "fan_in", "adam",
                                                    "attention", "logits", "head_dim",
                                                    "head_n"]),
                           "NUMBER": st.sampled_from(["1", "2", "0.5", "1e-8", "10"]),
                           "COMMENT": st.just("# c")}))
def test_grammar_generated_text_raises_only_spec_errors(text):
    _parse_and_compile(text)
