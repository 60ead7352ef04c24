"""A sampled corpus of real tiny trainings: configurations drawn from wide distributions, not hand-picked.

`space` draws one configuration per seed, `run` trains it on CPU and writes real event files with
tensorboardX, torch.utils.tensorboard or tbmon's shim in one of the contract's tag conventions,
`labels` decides from the written data alone what each run shows, and `corpus` builds (in parallel,
cached) the development and locked parts. The locked part is scored, never read run by run while a
rule is changed (docs/detection-quality.md).
"""
