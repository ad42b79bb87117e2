"""torch's ``scaled_dot_product_attention`` as an ``attention`` subject. The role passes
``is_causal`` as its fourth positional argument, where SDPA has ``attn_mask``; the adapter passes
both by keyword and nothing else."""
from __future__ import annotations

import torch.nn.functional as F


def attention(q, k, v, is_causal=False, scale=None):
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)
