#!/usr/bin/env python3
"""End to end with Hugging Face transformers: a tiny randomly initialised Llama (built from a
config, nothing downloaded) trained 3 steps with attnccl context parallelism on 2 and 3 ranks
(gloo processes) gives the same losses and parameter gradients as the same model in one process
over the whole sequence (torch's sdpa attention). Also with the MLP checkpointed (the recipe of
docs/python.md: backward re-runs the layer body but never the attention collective), and gpt-oss
(sinks, sliding window) when the installed transformers has it. Exits 77 without torch 2.4+ or
transformers."""
import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch2_support import SKIP, rel_err, run_ranks, torch2_or_skip  # noqa: E402

torch = torch2_or_skip()
try:
    import transformers
    from transformers import AttentionInterface  # noqa: F401  (4.48+)
except ImportError as e:
    print("SKIPPED: transformers with AttentionInterface cannot be imported (%s)" % e)
    sys.exit(SKIP)
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

import attnccl.hf  # noqa: E402
import attnccl.torch as at  # noqa: E402

B, S, V, STEPS, LR = 2, 24, 64, 3, 0.05


def _llama():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       attention_dropout=0.0, tie_word_embeddings=False)


def _gpt_oss():
    from transformers import GptOssConfig
    return GptOssConfig(vocab_size=V, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_local_experts=2,
                        num_experts_per_tok=1, sliding_window=6, max_position_embeddings=64,
                        layer_types=["sliding_attention", "full_attention"], attention_dropout=0.0,
                        tie_word_embeddings=False)


def _build(config, impl):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=impl,
                                             torch_dtype=torch.float32)
    if hasattr(model.model.layers[0].self_attn, "sinks"):  # zero-initialised: make them matter
        for layer in model.model.layers:
            torch.nn.init.normal_(layer.self_attn.sinks, std=1.0)
    return model


def _data():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (B, S), generator=g)
    target = torch.full_like(ids, -100)
    target[:, :-1] = ids[:, 1:]  # next-token labels, shifted on the whole sequence before sharding
    return ids, target


def _loss_sum(logits, target):
    return F.cross_entropy(logits.reshape(-1, V).float(), target.reshape(-1), ignore_index=-100, reduction="sum")


def _train(model, step_fn):
    """STEPS of plain SGD; step_fn(model) -> (loss, grads dict) of one step."""
    losses, grads = [], []
    for _ in range(STEPS):
        model.zero_grad()
        loss, g = step_fn(model)
        losses.append(loss)
        grads.append(g)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p -= LR * g[n]
    return losses, grads


def _reference_step(model):
    ids, target = _data()
    logits = model(input_ids=ids, use_cache=False).logits
    count = int((target != -100).sum())
    loss = _loss_sum(logits, target) / count
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}


def _cp_step(comm, layout):
    def step(model):
        ids, target = _data()
        count = int((target != -100).sum())
        local_ids, local_target = at.shard(ids, comm, layout), at.shard(target, comm, layout)
        pos = at.local_positions(S, comm, layout).unsqueeze(0).expand(B, -1)
        logits = model(input_ids=local_ids, position_ids=pos, use_cache=False).logits
        loss = _loss_sum(logits, local_target) / count  # this rank's share of the global mean
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        grads = {}
        for n, p in model.named_parameters():
            g = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            dist.all_reduce(g)  # the data-parallel sum a CP group does too
            grads[n] = g
        return float(total), grads
    return step


def _checkpoint_mlps(model):
    """LightSeq's recipe: recompute the layer body in backward, keep attention's O and LSE."""
    for layer in model.model.layers:
        mlp = layer.mlp
        fwd = mlp.forward
        mlp.forward = lambda x, fwd=fwd: torch.utils.checkpoint.checkpoint(fwd, x, use_reentrant=False)


def _compare(rank, world, config_fn, layout, checkpoint):
    config = config_fn()
    ref_losses, ref_grads = _train(_build(config, "eager"), _reference_step)

    comm = at.Communicator.from_process_group(cpu_threads=1)
    attnccl.hf.register(comm, layout=layout)
    model = _build(config, "attnccl")
    calls = [0]
    orig = attnccl.hf._attention

    def counting(*a, **k):
        calls[0] += 1
        return orig(*a, **k)
    transformers.AttentionInterface.register("attnccl", counting)
    if checkpoint:
        _checkpoint_mlps(model)
    losses, grads = _train(model, _cp_step(comm, layout))
    layers = config.num_hidden_layers
    assert calls[0] == STEPS * layers, "attention ran %d times for %d steps x %d layers (re-run in backward?)" % (
        calls[0], STEPS, layers)
    for step in range(STEPS):
        assert abs(losses[step] - ref_losses[step]) <= 1e-5 * abs(ref_losses[step]), (step, losses, ref_losses)
        for n, g in ref_grads[step].items():
            e = rel_err(grads[step][n], g)
            assert e < 1e-4, "step %d %s: gradient rel err %.2e" % (step, n, e)
    assert ref_losses[-1] < ref_losses[0], ref_losses  # it trains
    comm.destroy()
    if rank == 0:
        print("%s %d ranks %s%s: losses %s match" % (config_fn.__name__, world, layout,
                                                      " +checkpoint" if checkpoint else "", losses))


def _llama_and_gpt_oss(rank, world):
    _compare(rank, world, _llama, "zigzag", False)
    if hasattr(transformers, "GptOssConfig"):
        _compare(rank, world, _gpt_oss, "contiguous", False)


class HfContextParallel(unittest.TestCase):
    def test_llama_and_gpt_oss_2_ranks(self):
        # One process start for both models (importing torch + transformers dominates).
        run_ranks(_llama_and_gpt_oss, 2)

    def test_llama_3_ranks_checkpointed(self):
        run_ranks(_compare, 3, _llama, "zigzag", True)

    def test_gpt_oss_present(self):
        if not hasattr(transformers, "GptOssConfig"):
            self.skipTest("transformers %s has no gpt-oss: the sinks model is not tested" % transformers.__version__)


if __name__ == "__main__":
    unittest.main(verbosity=2)
