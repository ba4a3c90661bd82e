"""Experiments: what trains and evaluates, so it sits above both — the cross-source matrix, robustness under
perturbations, hyper-parameter sweeps and the end-to-end demo."""
