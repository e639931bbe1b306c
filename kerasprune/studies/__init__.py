"""Runs that are not experiments: measurements that answer one question each.

- :mod:`.train_step`: training-step time of dense, tfmot and kerasprune side by side;
- :mod:`.sparse_inference`: does TFLite's sparse format make a pruned model faster here?
- :mod:`.structured_latency`: dense vs structurally pruned convnets, TF-CPU and TFLite;
- :mod:`.serving_load`: the inference-time pruner under 10^5 concurrent requests;
- :mod:`.study`: what they share (measure, time and write a set of variants).
"""
