"""The training probe's parts: task, model placements, schedule, measurements, statistics, judging.

Tiny configurations only (seconds in all). The probes' real verdicts are re-judged from recorded
runs in tests/test_training_probe_recorded.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from normtheory.theory.training.claims import log_gradient_slope, log_gradient_spread
from normtheory.theory.training.judge import judge_result
from normtheory.theory.training.measure import angular_distances, block_gradient_norms
from normtheory.theory.training.model import PLACEMENTS, ModelConfig, TinyDecoder
from normtheory.theory.training.probes import ProbeSettings, run_probe
from normtheory.theory.training.stats import judge, mean_interval, t_quantile
from normtheory.theory.training.task import MarkovCopyTask, TaskConfig
from normtheory.theory.training.train import TrainConfig, learning_rate, lm_loss

TINY = {"seeds": 2, "layers": 2, "d": 16, "heads": 2, "steps": 4, "batch": 4,
        "task": TaskConfig(vocab=8, half=6, branching=2)}


# ------------------------------------------------------------------ task


def test_task_follows_its_chain_and_copies():
    task = MarkovCopyTask(TaskConfig(vocab=8, half=10, branching=2))
    tokens = task.sample(64, torch.Generator().manual_seed(0))
    half = 10
    assert torch.equal(tokens[:, :half], tokens[:, half:])
    # every chain step is one of the context's allowed successors, and each context has exactly 2
    probs = task.transition[tokens[:, :half - 2], tokens[:, 1:half - 1], tokens[:, 2:half]]
    assert bool((probs > 0).all())
    assert bool(((task.transition > 0).sum(-1) == 2).all())
    assert torch.allclose(task.transition.sum(-1), torch.ones(8, 8, dtype=torch.float64))
    # Bayes loss: ln 8 on the one uniform target, −ln p on the chain's targets, 0 on the copies
    expected = (math.log(8) - torch.log(probs).sum(dim=1).mean().item()) / (2 * half - 1)
    assert task.bayes_loss(tokens) == pytest.approx(expected, rel=1e-12)


def test_task_same_seed_same_sequences():
    task = MarkovCopyTask(TaskConfig(vocab=8, half=6))
    a = task.sample(5, torch.Generator().manual_seed(3))
    b = task.sample(5, torch.Generator().manual_seed(3))
    c = task.sample(5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------ model


def _reference_block(block, x, kind, scale):
    """The placements written out from their definitions, with F.layer_norm on the block's own
    parameters: an independent statement of what each placement computes."""
    def ln(norm, z):
        return F.layer_norm(z, z.shape[-1:], norm.weight, norm.bias, norm.eps)

    for sub, n_in, n_out in ((block.attn, block.norm1, getattr(block, "norm1_out", None)),
                             (block.mlp, block.norm2, getattr(block, "norm2_out", None))):
        if kind == "post":
            x = ln(n_in, x + sub(x))
        elif kind == "peri":
            x = x + ln(n_out, sub(ln(n_in, x)))
        else:
            x = x + sub(ln(n_in, x) * scale)
    return x


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_blocks_compute_their_placement(placement):
    torch.manual_seed(0)
    model = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=6, n_heads=2, placement=placement))
    for p in model.parameters():  # move LN gains and biases off their init so that they matter
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 12, 16)
    kinds = {"pre_ln": ["pre"] * 6, "lns": ["pre"] * 6, "post_ln": ["post"] * 6, "peri_ln": ["peri"] * 6,
             "mix_ln": ["post"] + ["pre"] * 5}[placement]  # Mix-LN, α = 0.25: ⌊0.25·6⌋ = 1 Post-LN block
    for layer, (block, kind) in enumerate(zip(model.blocks, kinds)):
        scale = 1 / math.sqrt(layer + 1) if placement == "lns" else 1.0
        torch.testing.assert_close(block(x), _reference_block(block, x, kind, scale))


def test_placements_share_initial_weights():
    weights = {}
    for placement in PLACEMENTS:
        torch.manual_seed(5)
        model = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2, placement=placement))
        weights[placement] = dict(model.named_parameters())
    for placement in PLACEMENTS:
        for name, value in weights["pre_ln"].items():
            if name in weights[placement]:
                assert torch.equal(value, weights[placement][name]), (placement, name)


def test_lns_differs_from_pre_ln_only_by_its_scale():
    torch.manual_seed(1)
    pre = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2, placement="pre_ln"))
    lns = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2, placement="lns"))
    lns.load_state_dict(pre.state_dict())
    tokens = torch.randint(8, (2, 12))
    # block 1 has scale 1/√1 = 1: identical; the stack (blocks 2, 3 scaled) is not
    x = pre.tok_emb(tokens)
    torch.testing.assert_close(pre.blocks[0](x), lns.blocks[0](x), rtol=0, atol=0)
    assert not torch.allclose(pre(tokens), lns(tokens))


def test_skipping_a_block_is_the_identity_there():
    torch.manual_seed(2)
    model = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2))
    tokens = torch.randint(8, (2, 12))
    hidden_full, hidden_skip = [], []
    model(tokens, hidden=hidden_full)
    model(tokens, skip_block=1, hidden=hidden_skip)
    assert torch.equal(hidden_skip[2], hidden_full[1])  # x_2 = x_1 when block 1 (0-based) is removed
    assert torch.equal(hidden_skip[1], hidden_full[1])


def test_post_ln_stream_is_normalised_and_pre_ln_is_not():
    torch.manual_seed(3)
    tokens = torch.randint(8, (4, 12))
    for placement, normalised in (("post_ln", True), ("pre_ln", False)):
        model = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2, placement=placement))
        hidden = []
        model(tokens, hidden=hidden)
        var = hidden[-1].var(dim=-1, correction=0)
        assert bool(torch.allclose(var, torch.ones_like(var), atol=1e-3)) == normalised


# ------------------------------------------------------------------ schedule and measurements


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, final_lr_fraction=0.1)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(99, config) == pytest.approx(0.1)
    no_warmup = TrainConfig(steps=100, lr=1.0, warmup_steps=0)
    assert learning_rate(0, no_warmup) == pytest.approx(1.0)
    rates = [learning_rate(s, no_warmup) for s in range(100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_angular_distance_of_known_pairs():
    x = torch.randn(2, 5, 8)
    orthogonal = torch.zeros(1, 1, 2), torch.zeros(1, 1, 2)
    orthogonal[0][..., 0], orthogonal[1][..., 1] = 1.0, 1.0
    assert angular_distances([x, x]) == [pytest.approx(0.0, abs=1e-3)]  # arccos near 1 is steep
    assert angular_distances([x, -x]) == [pytest.approx(1.0, abs=1e-3)]
    assert angular_distances(list(orthogonal)) == [pytest.approx(0.5, abs=1e-7)]


def test_block_gradient_norms_partition_the_gradient():
    torch.manual_seed(4)
    model = TinyDecoder(ModelConfig(vocab=8, seq_len=12, d=16, n_layers=3, n_heads=2))
    tokens = torch.randint(8, (4, 12))
    per_block = block_gradient_norms(model, tokens)
    lm_loss(model, tokens).backward()
    block_params = {id(p) for block in model.blocks for p in block.parameters()}
    rest = sum(float(p.grad.pow(2).sum()) for p in model.parameters() if id(p) not in block_params)
    total = sum(float(p.grad.pow(2).sum()) for p in model.parameters())
    assert sum(g * g for g in per_block) + rest == pytest.approx(total, rel=1e-5)


def test_gradient_profile_shape_measures():
    even = {"block_grad_norm": [2.0, 2.0, 2.0, 2.0]}
    rising = {"block_grad_norm": [1.0, math.e, math.e ** 2, math.e ** 3]}
    assert log_gradient_spread(even) == 0.0
    assert log_gradient_spread({"block_grad_norm": [10 * g for g in rising["block_grad_norm"]]}) == \
        pytest.approx(log_gradient_spread(rising))
    assert log_gradient_slope(rising) == pytest.approx(3.0)  # ln(last/first) along depth 0…1
    assert log_gradient_slope(even) == pytest.approx(0.0)


# ------------------------------------------------------------------ statistics


def test_t_quantiles_match_the_tables():
    # two-sided 95 % critical values from any t table
    for dof, value in ((1, 12.706), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert t_quantile(0.975, dof) == pytest.approx(value, abs=6e-4)
    assert t_quantile(0.8, 4) == pytest.approx(0.941, abs=6e-4)


def test_t_interval_coverage_on_normal_samples():
    """For normal samples the t interval covers the mean with probability exactly 1 − α; 4000
    replications put the observed rate within ±4 binomial standard errors of 0.95."""
    gen = torch.Generator().manual_seed(11)
    samples = torch.randn(4000, 5, generator=gen, dtype=torch.float64) * 3.0 + 1.5
    covered = 0
    for row in samples.tolist():
        interval = mean_interval(row, alpha=0.05)
        covered += interval.low <= 1.5 <= interval.high
    se = math.sqrt(0.95 * 0.05 / 4000)
    assert abs(covered / 4000 - 0.95) < 4 * se


def test_judging_rule():
    assert judge(mean_interval([1.0, 1.2, 0.9, 1.1], alpha=0.05)) == "HOLDS"
    assert judge(mean_interval([-1.0, -1.2, -0.9, -1.1], alpha=0.05)) == "REFUTED"
    assert judge(mean_interval([1.0, -1.2, 0.9, -1.1], alpha=0.05)) == "INCONCLUSIVE"
    assert judge(mean_interval([5.0], alpha=0.05)) == "INCONCLUSIVE"  # one seed: no interval
    assert mean_interval([1.0, float("nan"), 2.0], alpha=0.05).n == 2


def _constructed_cod(late_gain: float, n: int = 5) -> dict:
    """curse_of_depth records where LNS's late blocks cost `late_gain` nats more to remove."""
    arms = {"pre_ln": [], "lns": []}
    for i in range(n):
        jitter = 0.001 * (i - n / 2)
        base = {"final_val_loss": 1.0, "chance_loss": math.log(16), "angular_distance": [0.3, 0.2, 0.1, 0.05],
                "stream_rms": [1.0, 2.0, 4.0, 8.0, 16.0], "block_grad_norm": [1.0] * 4}
        arms["pre_ln"].append(base | {"removal_delta": [0.5, 0.1, 0.01, 0.01]})
        arms["lns"].append(base | {"removal_delta": [0.5, 0.1, 0.01 + late_gain + jitter, 0.01 + late_gain + jitter]})
    return {"probe": "curse_of_depth", "arms": arms}


def test_judge_flags_a_constructed_effect_in_both_directions():
    by_id = {c["id"]: c for c in judge_result(_constructed_cod(+0.05))["claims"]}
    assert by_id["cod.lns_late_blocks_matter_more"]["verdict"] == "HOLDS"
    assert by_id["cod.pre_ln_late_blocks_matter_less"]["verdict"] == "HOLDS"
    assert by_id["cod.lns_lower_loss"]["verdict"] == "INCONCLUSIVE"  # identical losses: no difference
    flipped = {c["id"]: c for c in judge_result(_constructed_cod(-0.05))["claims"]}
    assert flipped["cod.lns_late_blocks_matter_more"]["verdict"] == "REFUTED"


# ------------------------------------------------------------------ probes end to end


@pytest.mark.parametrize("probe", ["curse_of_depth", "gradient_profile", "warmup"])
def test_probe_records_have_their_structure(probe):
    result = run_probe(ProbeSettings(probe=probe, **TINY))
    expected_arms = {"curse_of_depth": {"pre_ln", "lns"},
                     "gradient_profile": {"pre_ln", "post_ln", "peri_ln", "mix_ln"},
                     "warmup": {"pre_ln/warmup", "pre_ln/no_warmup", "post_ln/warmup", "post_ln/no_warmup"}}[probe]
    assert set(result["arms"]) == expected_arms
    for records in result["arms"].values():
        assert [r["seed"] for r in records] == [0, 1]
        for record in records:
            assert record["steps_run"] == 4 and record["diverged_at"] is None
            assert len(record["removal_delta"]) == len(record["angular_distance"]) == 2
            assert len(record["stream_rms"]) == 3 and len(record["block_grad_norm"]) == 2
            assert record["bayes_loss"] < record["final_val_loss"] < 2 * record["chance_loss"]
    judged = judge_result(result)
    assert {c["verdict"] for c in judged["claims"]} <= {"HOLDS", "REFUTED", "INCONCLUSIVE"}


def test_same_seed_same_numbers_and_arms_really_differ():
    settings = ProbeSettings(probe="warmup", **TINY)
    first, second = run_probe(settings), run_probe(settings)
    assert first == second  # bit for bit, NaN-free records
    arms = first["arms"]
    assert arms["pre_ln/warmup"][0]["final_val_loss"] != arms["pre_ln/no_warmup"][0]["final_val_loss"]
    assert arms["pre_ln/warmup"][0]["final_val_loss"] != arms["pre_ln/warmup"][1]["final_val_loss"]
