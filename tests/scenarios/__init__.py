"""A labelled corpus of real tiny trainings: the evidence behind tbmon's detection-quality claims.

`catalog` lists the scenarios (healthy runs and injected pathologies), `training` runs them on CPU
and writes real TensorBoard event files, `labels` derives each pathology's onset from the written
data with criteria that share nothing with tbmon's rules, `corpus` builds (and caches) the whole
set, `replay` feeds it to tbmon's engine a training step at a time (what `tbmon watch` sees), and
`scoring` turns tbmon's alerts into recall / false-alarm / delay figures.
"""
