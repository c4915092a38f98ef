"""A small pre-norm residual MLP for the depth properties (tests/properties/test_depth_slopes.py).

The reference transformer's structure without attention, so that a depth check runs in
seconds on a CPU: `x = embed(input)`, then per block `x + s * down(gelu(up(LN(x))))`
(`s`: the `branch_multiplier` that `c.init` sets from the spec's `residual` block), then
`readout(LN(x))`. Its `features` name what `paramspec._coord_depth` reads: `embed`,
`blocks[i].mlp` (each branch's output as added to the stream) and `logits`.
"""

import equinox as eqx
import jax


class ResBlock(eqx.Module):
    norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear
    branch_multiplier: float = eqx.field(static=True, default=1.0)

    def branch(self, x):
        return self.branch_multiplier * self.down(jax.nn.gelu(self.up(self.norm(x))))


class ResMLP(eqx.Module):
    embed: eqx.nn.Linear
    blocks: tuple[ResBlock, ...]
    final_norm: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __call__(self, x):
        return self.features(x)["logits"]

    def features(self, x):
        x = self.embed(x)
        out = {"embed": x}
        for i, block in enumerate(self.blocks):
            out[f"blocks[{i}].mlp"] = b = block.branch(x)
            x = x + b
        out["logits"] = self.readout(self.final_norm(x))
        return out

    def feature_roles(self):
        roles = {"embed": "input"}
        roles.update({f"blocks[{i}].mlp": "hidden" for i in range(len(self.blocks))})
        roles["logits"] = "output"
        return roles


def resmlp(width, key, *, depth=2, in_size=8, out_size=4):
    ekey, rkey, *bkeys = jax.random.split(key, 2 + depth)

    def block(k):
        ukey, dkey = jax.random.split(k)
        return ResBlock(eqx.nn.LayerNorm(width, use_bias=False),
                        eqx.nn.Linear(width, 2 * width, use_bias=False, key=ukey),
                        eqx.nn.Linear(2 * width, width, use_bias=False, key=dkey))

    return ResMLP(eqx.nn.Linear(in_size, width, use_bias=False, key=ekey),
                  tuple(block(k) for k in bkeys),
                  eqx.nn.LayerNorm(width, use_bias=False),
                  eqx.nn.Linear(width, out_size, use_bias=False, key=rkey))
