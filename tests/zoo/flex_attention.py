"""``flex_attention`` with a score modifier (relative position bias) and a causal block mask,
inside a compiled attention function; compared with the same attention written out in plain
torch (flex_attention's own eager path compiles too)."""
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import _zoo


def relative(score, b, h, q_idx, kv_idx):
    return score + (q_idx - kv_idx) * 0.1


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def attend(q, k, v, mask):
    return flex_attention(q, k, v, score_mod=relative, block_mask=mask)


def reference(q, k, v):
    n = q.shape[-2]
    i = torch.arange(n)
    bias = (i[:, None] - i[None, :]) * 0.1
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias
    s = s.masked_fill(i[:, None] < i[None, :], float("-inf"))
    return torch.softmax(s, -1) @ v


def run():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 16) for _ in range(3))
    mask = create_block_mask(causal, None, None, 128, 128, device="cpu")
    with torch.no_grad():
        return [_zoo.compare("out", _zoo.compile(attend)(q, k, v, mask), reference(q, k, v))]


EXTRA = _zoo.EXTRA
