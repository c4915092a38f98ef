"""`compile` warns about a spec that is unstable for its optimizer and alignment, names the
block and the fix, and stays quiet where the spec says `unstable "reason"`."""

import warnings

import pytest
from typer.testing import CliRunner

import paramspec as ps
from paramspec._cli import app

# A block added to mup with a fixed learning rate where `lr auto` was needed.
ADDED_BLOCK = """spec my
extends mup

extra {
    role        hidden
    match       path="extra.*"
    init        fan_in^(-1/2)
    lr          0.5
}
"""


def test_a_block_with_a_fixed_lr_is_named_with_its_fix():
    with pytest.warns(ps.UnstableSpecWarning) as record:
        ps.compile(ps.parse(ADDED_BLOCK), width=1024, base_width=64)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("spec `my` is unstable under adam with alignment full:")
    assert "block `extra` (hidden): its own update is too large: r = -1 < 0" in message
    assert "fix: `lr auto` in block `extra`" in message
    assert "from `extra`" in message  # the readout downstream says where its change comes from
    assert 'unstable "reason"' in message
    assert record[0].filename == __file__  # points at the caller of ps.compile


def test_the_fix_silences_it_and_so_does_a_deliberate_statement():
    fixed = ADDED_BLOCK.replace("lr          0.5", "lr          0.5 * auto")
    deliberate = ADDED_BLOCK.replace("extends mup\n", 'extends mup\nunstable "a test"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps.compile(ps.parse(fixed), width=1024)
        c = ps.compile(ps.parse(deliberate), width=1024)
    assert c.spec.unstable == "a test" and not c.theory.stable  # still unstable: check says so


@pytest.mark.parametrize("name", ["sp-global", "sp-embed-lr"])
def test_the_sweep_baselines_are_deliberately_unstable(name):
    spec = ps.load(name)
    assert spec.unstable is not None and "sweep baseline" in spec.unstable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = ps.compile(name, width=4096, base_width=256)
    assert not c.theory.stable
    assert not ps.check(name).stable  # `check` still reports them (exit 3)


def test_every_other_builtin_compiles_without_a_warning_for_its_own_optimizer():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ps.builtin_names():
            ps.compile(name, width=4096, base_width=256)


def test_unstable_is_not_inherited():
    child = ps.parse('spec child\nextends sp-global\n')
    with pytest.warns(ps.UnstableSpecWarning, match="spec `child` is unstable"):
        ps.compile(child, width=64)


def test_unstable_round_trips_through_fmt():
    spec = ps.parse('spec x\nunstable "a \\"baseline\\""\nhidden {\n    init fan_in^(-1/2)\n}\n')
    assert spec.unstable == 'a "baseline"'
    text = ps.render(spec)
    assert 'unstable "a \\"baseline\\""' in text
    assert ps.parse(text) == spec


def test_cli_warns_on_stderr_and_exits_0(tmp_path):
    path = tmp_path / "my.pspec"
    path.write_text(ADDED_BLOCK)
    result = CliRunner().invoke(app, ["compile", str(path), "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: spec `my` is unstable under adam")
    assert "fix: `lr auto` in block `extra`" in result.stderr
    assert result.stdout.startswith("{")  # the table is still printed
    quiet = CliRunner().invoke(app, ["compile", "sp-global", "--format", "json"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
