import inspect
import re


def run_docstring_examples(module):
    """Run every ```python block in the docstrings of `module`'s public names; count them."""
    count = 0
    for name in module.__all__:
        doc = inspect.getdoc(getattr(module, name)) or ""
        for block in re.findall(r"```python\n(.*?)```", doc, re.S):
            exec(compile(block, f"{module.__name__}.{name}", "exec"), dict(vars(module)))
            count += 1
    return count
