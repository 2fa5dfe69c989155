"""Stacked parameters that carry the Adam state where their training left it.

A trained toy DDPM ensemble is its parameter dict (name -> [N, ...]); `TrainedParams` is that
dict with one more attribute, `adam`, so that a fine-tune can continue the base's optimizer
(DDPMConfig.finetune = "continue"). Everything that reads a model as a dict keeps working
(`combine`, the experiments, the samplers); a dict built from it (`dict(p)`, a comprehension,
`combine`) is plain parameters without optimizer state, and so is a pickled copy (`torch.save`
writes an OrderedDict, loadable with `weights_only=True`): the state serves the fine-tune of the
same generation only, and a warm start of the next generation restarts Adam anyway.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Mapping

import torch

# adam = {"step": int (Adam steps taken), "exp_avg": {name: [N, ...]}, "exp_avg_sq": {name: [N, ...]},
#         "next_lr": float (the lr the schedule had reached: what a continued fine-tune uses)}
AdamState = dict[str, Any]


class TrainedParams(dict):
    """name -> [N, ...] parameters, plus `adam`: the optimizer state (None: none)."""

    def __init__(self, params: Mapping[str, torch.Tensor] = (), adam: AdamState | None = None):
        super().__init__(params)
        self.adam = adam

    def __reduce__(self):
        return (OrderedDict, (), None, None, iter(self.items()))

    def __copy__(self) -> "TrainedParams":
        return TrainedParams(self, self.adam)

    def __deepcopy__(self, memo) -> "TrainedParams":
        return TrainedParams(copy.deepcopy(dict(self), memo), copy.deepcopy(self.adam, memo))


def adam_state(model: Mapping) -> AdamState | None:
    """The optimizer state `model` carries, or None (plain parameter dicts carry none)."""
    return getattr(model, "adam", None)
