"""The torch harness: its blocks are PyTorch's, its batching is sound, and at small d and L
every prediction agrees with measurement while deliberately wrong ones are rejected by the
same judge."""

import numpy as np
import pytest
import torch

from normtheory.theory.meanfield import montecarlo as mc
from normtheory.theory.meanfield import predictions as mf


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


# ---------------------------------------------------------------- predictions vs measurement

SMALL = dict(d=64, depths=(2, 4, 8, 16), n_tokens=16)
SEEDS = list(range(12))


@pytest.fixture(scope="module")
def small_records():
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on CI's 2 cores
    return [mc.run_record(mc.ARCHS, mc.StackConfig(setup=s, **SMALL), SEEDS) for s in mc.SETUPS]


HOLDS_AT_INIT = {
    "xiong.lemma1", "xiong.lemma2.post", "xiong.lemma2.pre", "peri.linear", "lns.homogeneity",
    "meanfield.grad.post", "meanfield.grad.pre", "meanfield.grad.pre.scaling",
    "meanfield.grad.post.scaling", "lns.homogeneity.scaling", "xiong.thm1.post",
}


def test_predictions_hold_at_small_d_and_L(small_records):
    comparisons = mf.analyse(small_records)
    by_name = {}
    for c in comparisons:
        by_name.setdefault(c.prediction, []).append(c)
    assert HOLDS_AT_INIT <= set(by_name)
    failures = [(c.prediction, c.setup, c.arch, c.d, c.L, c.quantity, c.measured, c.lower, c.upper, c.tolerance)
                for name in HOLDS_AT_INIT for c in by_name[name] if c.verdict != "PASS"]
    assert not failures, failures


def test_lns_recursion_is_rejected_and_homogeneity_is_not(small_records):
    comparisons = mf.analyse(small_records)
    recursion = [c for c in comparisons if c.prediction == "sun.lns.recursion" and c.L == 16]
    homogeneity = [c for c in comparisons if c.prediction == "lns.homogeneity.scaling" and c.L == 16]
    assert recursion and all(c.verdict == "FAIL" for c in recursion)
    assert homogeneity and all(c.verdict == "PASS" for c in homogeneity)


def test_wrong_flat_pre_ln_gradient_is_rejected_by_the_same_check(small_records):
    views = [mf.RecordView(r) for r in small_records]
    laws = (mf.WRONG_FLAT_PRE,) + mf.SCALING_LAWS
    comparisons = mf.judge_all(mf.scaling_comparisons(views, laws)
                               + [c for v in views for c in mf.forward_and_gradient_comparisons(v)])
    wrong = [c for c in comparisons if c.prediction == "wrong.pre.flat"]
    right = [c for c in comparisons if c.prediction == "meanfield.grad.pre.scaling" and c.arch == "pre_ln"]
    deep = [c for c in wrong if c.L == 16 or c.quantity.startswith("exponent")]
    assert deep and all(c.verdict == "FAIL" for c in deep)
    assert right and all(c.verdict == "PASS" for c in right)


def test_wrong_exact_values_are_rejected_by_the_same_judge(small_records):
    comparisons = mf.analyse(small_records)
    post = [c for c in comparisons if c.prediction == "xiong.lemma2.post" and c.setup == "xiong"]
    assert post and post[0].verdict == "PASS"
    # "Post-LN keeps E||x + FFN(x)||^2 = d" (forgetting the FFN's d/2) must fail
    wrong = mf.Comparison(**{**post[0].__dict__, "lower": 1.0, "upper": 1.0})
    band = [c for c in comparisons if c.prediction == "xiong.lemma2.pre" and c.L == 16 and c.setup == "xiong"]
    # "Pre-LN hidden states do not grow" must fail too
    flat = mf.Comparison(**{**band[0].__dict__, "lower": 1.0, "upper": 1.0})
    mf.judge_all([wrong, flat] + comparisons)
    assert (wrong.verdict, flat.verdict) == ("FAIL", "FAIL")


@pytest.mark.gpu
def test_predictions_hold_on_cuda():
    records = [mc.run_record(mc.ARCHS, mc.StackConfig(setup=s, **SMALL), SEEDS, device="cuda") for s in mc.SETUPS]
    assert all(r["environment"]["tf32_matmul"] is False for r in records)
    comparisons = mf.analyse(records)
    failures = [(c.prediction, c.setup, c.arch, c.L) for c in comparisons
                if c.prediction in HOLDS_AT_INIT and c.verdict != "PASS"]
    assert not failures, failures
