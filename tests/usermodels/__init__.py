"""Third-party-style Equinox models, written the way users write them (test-only).

These models deliberately do NOT use `paramspec.models`: they are plain `equinox` /
`jax` / `optax` code in the style of well-known public examples (a nanoGPT port, the
vision transformer and MNIST CNN of Equinox's own docs, a LLaMA-style decoder, a
mixture-of-experts block, a GRU encoder), so that tests can check that paramspec works
on models it has never seen. Each is small and fast at widths 32..128.

The convention: every module in this package defines, at module level,

- `make_model(width, key, **kw) -> eqx.Module`: `width` is the model width (d_model, or
    the channel count of the CNN); every other size is fixed by a keyword default (small:
    vocabulary 64-100, sequence length 8-16, depth 2, 10 classes, 8x8 or 16x16 images).
    `make_model(width, key)` is the `FILE.py:FUNC` factory of paramspec's CLI.
- `model(example) -> logits`: the model maps ONE example to logits of shape
    `(NUM_CLASSES,)` (classifiers) or `(seq_len, NUM_CLASSES)` (language models); the
    shape does not depend on the width.
- `make_batch(key, batch_size=8) -> (x, y)`: inputs and integer labels, with shapes that
    do not depend on the width.
- `loss(model, x, y) -> scalar`: mean cross-entropy
    (`optax.softmax_cross_entropy_with_integer_labels`), the model applied per example
    with `jax.vmap`, as users do.
- `NUM_CLASSES`: the number of classes of that cross-entropy (the vocabulary size for
    language models); at initialisation the loss is close to `ln(NUM_CLASSES)`.
- `LAYOUTS`: what a user must pass as `layouts=` to `c.init` / `paramspec.infer_leaves`
    for the model's bare-array parameters (a dict keyed by `"ModuleType.field"` or by
    path, values `paramspec.Layout`), or `None` when every parameter lives in an
    `eqx.nn` layer or is a vector.
- `ROLES`: a `roles=` mapping a user must pass because a parameter's role cannot be
    inferred from shapes, or `None` (no model here needs one).
- `EXPECTED_ROLES`: what `reference/theory.md` §1 says each parameter's role is,
    `{path: role}` for every parameter, written by hand (not computed) so tests can
    compare paramspec's inference against it.

Modules: `gpt` (nanoGPT port, tied lm_head), `vit` (Equinox's ViT example),
`cnn` (Equinox's MNIST CNN), `llama` (RMSNorm, SwiGLU, GQA, RoPE), `moe` (router and
stacked bare-array experts), `rnn` (GRU encoder).
"""

MODULES = ("gpt", "vit", "cnn", "llama", "moe", "rnn")
