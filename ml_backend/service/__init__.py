"""The ML backend Label Studio talks to: protocol, per-project models, background training."""
