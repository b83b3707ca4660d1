"""The torch harness: its blocks are PyTorch's, its batching is sound, and at small d and L
every prediction agrees with measurement while deliberately wrong ones are rejected by the
same judge."""

import numpy as np
import pytest
import torch
from torch_threads import torch_threads

from normtheory.theory.meanfield import montecarlo as mc


def _stack64(cfg, seeds, dtype=torch.float64):
    return mc.draw_stack(cfg, seeds, "cpu", dtype=dtype)


@pytest.mark.parametrize("norm_first, arch", [(False, "post_ln"), (True, "pre_ln")])
def test_standard_block_equals_torch_transformer_encoder_layer(norm_first, arch):
    d, n = 128, 8
    cfg = mc.StackConfig(setup="standard", d=d, depths=(1,), n_tokens=n)
    stack = _stack64(cfg, [3])
    w = {k: v.detach()[0] for k, v in stack.layers[0].items()}
    layer = torch.nn.TransformerEncoderLayer(d, cfg.n_heads, dim_feedforward=4 * d, dropout=0.0,
                                             activation="relu", layer_norm_eps=1e-5, batch_first=True,
                                             norm_first=norm_first, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([w["wq"].T, w["wk"].T, w["wv"].T]))
        layer.self_attn.out_proj.weight.copy_(w["wo"].T)
        layer.linear1.weight.copy_(w["w1"].T)
        layer.linear2.weight.copy_(w["w2"].T)
    layer.train()  # dropout is 0; train mode keeps PyTorch off its fused inference path
    expected = layer(stack.h0.detach()[0:1])
    ours = mc.forward_stack(arch, cfg, stack).hidden[1]
    torch.testing.assert_close(ours.detach(), expected.detach(), rtol=1e-12, atol=1e-12)


def test_uniform_attention_is_softmax_attention_with_zero_query_and_key():
    d, n = 64, 8
    x = torch.randn(2, n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    wv = torch.randn(2, d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    zero = torch.zeros(2, d, d, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64).expand(2, d, d)
    general = mc.softmax_attention(x, {"wq": zero, "wk": zero, "wv": wv, "wo": eye}, n_heads=4)
    torch.testing.assert_close(mc.uniform_attention(x, wv), general, rtol=1e-13, atol=1e-13)


def test_seed_batching_and_depth_prefix_do_not_change_a_model():
    cfg = mc.StackConfig(setup="xiong", d=32, depths=(2, 4), n_tokens=4)
    together = mc.measure(["pre_ln"], cfg, [0, 1, 2])["pre_ln"]
    one_by_one = mc.measure(["pre_ln"], cfg, [0, 1, 2], memory_budget_bytes=1)["pre_ln"]
    np.testing.assert_array_equal(together["hidden_ms"], one_by_one["hidden_ms"])
    np.testing.assert_allclose(together["grad_sq"][4]["w2"], one_by_one["grad_sq"][4]["w2"], rtol=1e-6)
    shallow = mc.measure(["pre_ln"], mc.StackConfig(setup="xiong", d=32, depths=(2,), n_tokens=4), [1])["pre_ln"]
    np.testing.assert_array_equal(shallow["hidden_ms"][0], together["hidden_ms"][1, :3])
    np.testing.assert_allclose(shallow["grad_sq"][2]["w1"][0], together["grad_sq"][2]["w1"][1], rtol=1e-6)


def test_lns_first_block_is_pre_ln_and_pre_rms_is_not_pre_ln():
    cfg = mc.StackConfig(setup="standard", d=64, depths=(3,), n_tokens=8)
    stack = _stack64(cfg, [5])
    pre = mc.forward_stack("pre_ln", cfg, stack).hidden
    lns = mc.forward_stack("lns", cfg, stack).hidden
    rms = mc.forward_stack("pre_rms", cfg, stack).hidden
    torch.testing.assert_close(lns[1], pre[1])  # scale 1/sqrt(1) = 1
    assert not torch.allclose(lns[2], pre[2])
    assert not torch.allclose(rms[1], pre[1])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError):
        mc.StackConfig(setup="nope", d=64, depths=(2,))
    with pytest.raises(ValueError):
        mc.StackConfig(setup="xiong", d=2, depths=(2,))
    with pytest.raises(ValueError):
        mc.StackConfig(setup="xiong", d=64, depths=(2,), activation="gelu")
    with pytest.raises(ValueError):
        mc.forward_stack("post_rms", mc.StackConfig(setup="xiong", d=8, depths=(1,)),
                         mc.draw_stack(mc.StackConfig(setup="xiong", d=8, depths=(1,)), [0], "cpu"))


# ---------------------------------------------------------------- claims vs measurement

SMALL = dict(d=64, depths=(2, 4, 8, 16), n_tokens=16)
SEEDS = list(range(16))
# wrong variants that even a d = 64 run must refute (the others need d >= 256: their MDE says so)
REFUTED_AT_D_64 = {"xiong.lemma1.wrong", "xiong.lemma2.post.wrong", "xiong.lemma2.pre.wrong", "peri.linear.wrong",
                   "xiong.thm1.pre.bound.wrong", "xiong.thm1.post.bound.wrong", "meanfield.pre.transient.wrong",
                   "sun.lns.recursion"}


@pytest.fixture(scope="module")
def small_results():
    from normtheory.theory.claims import core, registry
    from normtheory.theory.claims.evidence import Evidence

    with torch_threads(1):  # tiny matmuls (tests/torch_threads.py)
        records = [mc.run_record(mc.ARCHS, mc.StackConfig(setup=s, **SMALL), SEEDS) for s in mc.SETUPS]
        return {r.claim.id: r for r in core.judge_all(registry.all_claims(), Evidence.from_records(records))}


# A true claim is refuted by chance with probability up to 5% (its family level), and per-seed
# mean squares are skewed (16 seeds undercover now and then: seeds 0..15 put Peri-LN's
# d = 64, L = 8 point 3.2 SE above 1 + 2L, seeds 16..47 put it 0.5 SE below). A fixed-seed CI
# test of "not refuted" would encode which seeds happened to pass; it asserts instead that no
# comparison of a claim expected to hold is grossly violated (p < 1e-4, chance < 1e-4 x the
# ~60 comparisons), and leaves the verdicts to the H100 test (test_meanfield_claims.py).
GROSS = 1e-4


def gross_violations(results, expectation="holds"):
    return {(k, t.label): t.p_value for k, r in results.items() if r.claim.expectation == expectation
            for t in r.tests if t.p_value < GROSS}


def test_no_claim_expected_to_hold_is_grossly_violated_at_small_d_and_L(small_results):
    assert not gross_violations(small_results)
    assert all(small_results[k].tests for k in ("xiong.lemma1", "xiong.lemma2.post", "xiong.lemma2.pre",
                                                "peri.linear", "lns.growth", "meanfield.pre.transient"))


def test_wrong_variants_and_refuted_sources_are_refuted_by_the_same_judge(small_results):
    wrong = {k: (r.verdict, r.reason) for k, r in small_results.items() if k in REFUTED_AT_D_64 and r.verdict != "REFUTED"}
    assert not wrong, wrong


def test_underpowered_claims_say_so_with_their_mde(small_results):
    # the conditional identity's own model error (11/d = 17% at d = 64) exceeds its resolution
    conditional = small_results["meanfield.grad.conditional"]
    assert conditional.verdict == "INCONCLUSIVE" and conditional.mde > conditional.claim.resolution


@pytest.mark.gpu
def test_claims_on_cuda():
    from normtheory.theory.claims import core, registry
    from normtheory.theory.claims.evidence import Evidence

    records = [mc.run_record(mc.ARCHS, mc.StackConfig(setup=s, **SMALL), SEEDS, device="cuda") for s in mc.SETUPS]
    assert all(r["environment"]["tf32_matmul"] is False for r in records)
    results = core.judge_all(registry.all_claims(), Evidence.from_records(records))
    assert not gross_violations({r.claim.id: r for r in results})
