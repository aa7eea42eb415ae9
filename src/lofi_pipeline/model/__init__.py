"""The models: ensemble members, training, baselines, scoring and sampling."""
