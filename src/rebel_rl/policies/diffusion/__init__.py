"""The diffusion kind of policy, one room: `policy.py` (the generic `DiffusionPolicy`, its
`DiffusionRollout`, and the pixel-space `ClassConditionalDiffusionPolicy`), `sampling.py` (the
samplers with their exact per-step log-density), `pipeline.py` (Stable Diffusion / LCM checkpoints)
and `kind.py` (how a source is recognised, checked and loaded: `POLICY_KIND`, which
policies/factory.py registers). Importing the package loads none of them.
"""
