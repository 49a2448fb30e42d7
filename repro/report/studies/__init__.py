"""The ablation studies (activation, multi-step, latent size): each study's outcomes, tables
and figures from its runs under ``runs/studies/``.
"""
