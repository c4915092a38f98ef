"""The `--model FILE.py:FUNC` loader: loads factories, and every mistake is a SpecError."""

import pytest

from paramspec import SpecError
from paramspec._usermodel import load_model


def _write(tmp_path, text, name="models.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_the_factory_and_its_companions(tmp_path):
    (tmp_path / "helper.py").write_text("SCALE = 3\n")
    path = _write(tmp_path, "import helper\n"
                  "def make(width, key):\n    return width * helper.SCALE\n"
                  "LOSS = 'xent'\n")
    user = load_model(f"{path}:make")
    assert user.make_model(4, None) == 12
    assert user.companion("LOSS") == "xent"
    assert user.companion("absent") is None


@pytest.mark.parametrize("reference, message", [
    ("models.py", "does not name a function"),
    ("models.py:", "does not name a function"),
    ("models.py:1x", "is not a Python name"),
    ("missing.py:make", "is not a file"),
    ("models.py:nothing", "has no function 'nothing'"),
    ("models.py:VALUE", "not a function"),
])
def test_mistakes_are_spec_errors(tmp_path, monkeypatch, reference, message):
    _write(tmp_path, "VALUE = 1\ndef make(width, key):\n    return width\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=message):
        load_model(reference)


def test_an_error_inside_the_file_names_its_line(tmp_path):
    path = _write(tmp_path, "x = 1\ny = 1 / 0\n")
    with pytest.raises(SpecError, match=r"models.py:2 failed: ZeroDivisionError"):
        load_model(f"{path}:make")


def test_not_a_python_file(tmp_path):
    path = _write(tmp_path, "", name="models.txt")
    with pytest.raises(SpecError, match="not a Python file"):
        load_model(f"{path}:make")
