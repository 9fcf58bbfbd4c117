"""Built-in offline image task `digits`: a class-conditional diffusion model of handwritten digits.

Everything ships offline: the images are the 1,797 handwritten digits inside scikit-learn
(`sklearn.datasets.load_digits`, 8x8, 17 gray levels), upsampled to 16x16 and scaled to [-1, 1]. We
pre-train a small diffusers `UNet2DModel` (num_class_embeds=11: digits 0-9 and class 10 = "no
label", the unconditional branch of classifier-free guidance; labels are dropped 10% of the time)
once, on the CPU, and cache it in $REBEL_RL_CACHE/digits-denoiser (default
~/.cache/rebel_rl/digits-denoiser).

Prompts read "a handwritten digit 7"; the policy conditions on the one digit a prompt names (as a
numeral or a word). Train and test use disjoint prompt templates over the same ten digits.

One module per job: prompts.py (the prompt sets, the digit a prompt names), images.py (the
scikit-learn images), denoiser.py (the UNet, its pre-training and cache), policy.py (the
`builtin:digits-denoiser` policy), quality.py (the `digit_quality` reward's classifier), plots.py
(sample grids), cache.py. tasks/__init__.py registers the prompts, the reward and the model;
importing this package stays light.

`python -m rebel_rl.tasks.digits [grid.png]` pre-trains (if needed) and writes a grid of samples.
"""
