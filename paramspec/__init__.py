"""paramspec: declarative width-scaling parameterizations."""
