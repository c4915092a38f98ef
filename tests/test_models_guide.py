"""docs/models.md ("your own model") runs: its Python examples marked `<!-- run -->`,
in order, as one script (the roles, attention and own-init sections); its router and
buffer blocks run in tests/test_describe.py."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_the_marked_examples_run_in_order():
    text = DOC.read_text()
    blocks = re.findall(r"<!-- run -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3, "docs/models.md: expected the roles, attention and init examples"
    namespace: dict = {"__name__": "models_md"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[run block {i}]", "exec"), namespace)  # noqa: S102
    # the script built what the guide says it did
    assert {"model", "applied", "at_base", "wide"} <= set(namespace)
