#!/usr/bin/env python3
"""Derives the golden values in dpo_loss.rs with TRL's formulas, in plain Python floats.

Each loss below is transcribed from TRL (`DPOTrainer.dpo_loss` for the reference-based
losses, `CPOTrainer.cpo_loss` for simpo/cpo, `ORPOTrainer.odds_ratio_loss` for orpo), in
TRL's own variable names, on the two pairs of dpo_loss.rs's `inputs()` with beta = 0.5 and
TRL's defaults for the rest (simpo_gamma 0.5, cpo_alpha 1, orpo lambda 0.1, discopop tau
0.05). It then reads dpo_loss.rs and checks every `(DpoLoss::Kind, value)` in
`every_loss_matches_golden_values` against what it computed, so a value there that no
formula gives fails here. Standard library only:

    python3 policy/tests/dpo_golden.py
"""

import math
import re
import sys
from pathlib import Path

BETA = 0.5
# Per pair: policy and reference summed log-probs, completion token counts.
CHOSEN = [-10.0, -20.0]
REJECTED = [-12.0, -18.0]
REF_CHOSEN = [-11.0, -19.0]
REF_REJECTED = [-11.5, -19.5]
CHOSEN_LEN = [5.0, 10.0]
REJECTED_LEN = [4.0, 8.0]


def logsigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x):
    return math.exp(logsigmoid(x))


def mean(xs):
    return sum(xs) / len(xs)


def nll_chosen():
    """TRL's cross-entropy on the chosen completions: a mean over their tokens."""
    return -sum(CHOSEN) / sum(CHOSEN_LEN)


def dpo(loss_type, label_smoothing=0.0, tau=0.05):
    """DPOTrainer.dpo_loss; ipo and sigmoid_norm see length-normalised log-probs."""
    losses = []
    ratios = [(c - rc, r - rr) for c, r, rc, rr in zip(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED)]
    if loss_type in ("ipo", "sigmoid_norm"):
        ratios = [(cw / nw, cl / nl) for (cw, cl), nw, nl in zip(ratios, CHOSEN_LEN, REJECTED_LEN)]
    # bco_pair: a fresh RunningMoments holds the batch's mean reward after one update.
    delta = mean([BETA * x for pair in ratios for x in pair])
    for chosen_logratios, rejected_logratios in ratios:
        logits = chosen_logratios - rejected_logratios
        ls = label_smoothing
        if loss_type in ("sigmoid", "sigmoid_norm"):
            loss = -logsigmoid(BETA * logits) * (1 - ls) - logsigmoid(-BETA * logits) * ls
        elif loss_type == "robust":
            loss = (-logsigmoid(BETA * logits) * (1 - ls) + logsigmoid(-BETA * logits) * ls) / (1 - 2 * ls)
        elif loss_type == "hinge":
            loss = max(0.0, 1 - BETA * logits)
        elif loss_type == "ipo":
            loss = (logits - 1 / (2 * BETA)) ** 2
        elif loss_type == "bco_pair":
            chosen_rewards, rejected_rewards = BETA * chosen_logratios, BETA * rejected_logratios
            loss = -logsigmoid(chosen_rewards - delta) - logsigmoid(-(rejected_rewards - delta))
        elif loss_type == "nca_pair":
            chosen_rewards, rejected_rewards = BETA * chosen_logratios, BETA * rejected_logratios
            loss = -logsigmoid(chosen_rewards) - 0.5 * logsigmoid(-chosen_rewards) - 0.5 * logsigmoid(-rejected_rewards)
        elif loss_type == "apo_zero":
            loss = (1 - sigmoid(BETA * chosen_logratios)) + sigmoid(BETA * rejected_logratios)
        elif loss_type == "apo_down":
            loss = sigmoid(BETA * chosen_logratios) + (1 - sigmoid(BETA * (chosen_logratios - rejected_logratios)))
        elif loss_type == "sppo_hard":
            loss = (chosen_logratios - 0.5 / BETA) ** 2 + (rejected_logratios + 0.5 / BETA) ** 2
        elif loss_type == "discopop":
            logits = logits * BETA
            logistic_component = -logsigmoid(logits)
            exp_component = math.exp(-logits)
            modulation = sigmoid(logits / tau)
            loss = logistic_component * (1 - modulation) + exp_component * modulation
        else:
            raise ValueError(loss_type)
        losses.append(loss)
    return mean(losses)


def cpo(loss_type, simpo_gamma=0.5, cpo_alpha=1.0):
    """CPOTrainer.cpo_loss (simpo on average log-probs) plus cpo's NLL on the chosen."""
    losses = []
    for c, r, nc, nr in zip(CHOSEN, REJECTED, CHOSEN_LEN, REJECTED_LEN):
        if loss_type == "simpo":
            logits = c / nc - r / nr - simpo_gamma / BETA
        else:
            logits = c - r
        losses.append(-logsigmoid(BETA * logits))
    nll = cpo_alpha * nll_chosen() if loss_type == "cpo" else 0.0
    return mean(losses) + nll


def orpo(orpo_lambda=0.1):
    """ORPOTrainer: NLL(chosen) − λ · mean log σ(log odds ratio), on average log-probs."""
    ratios = []
    for c, r, nc, nr in zip(CHOSEN, REJECTED, CHOSEN_LEN, REJECTED_LEN):
        chosen_logps, rejected_logps = c / nc, r / nr
        log_odds = (chosen_logps - rejected_logps) - (
            math.log1p(-math.exp(chosen_logps)) - math.log1p(-math.exp(rejected_logps))
        )
        ratios.append(logsigmoid(log_odds))
    return nll_chosen() - orpo_lambda * mean(ratios)


GOLDEN = {
    "Sigmoid": dpo("sigmoid"),
    "Robust": dpo("robust"),
    "Hinge": dpo("hinge"),
    "Ipo": dpo("ipo"),
    "SigmoidNorm": dpo("sigmoid_norm"),
    "BcoPair": dpo("bco_pair"),
    "NcaPair": dpo("nca_pair"),
    "ApoZero": dpo("apo_zero"),
    "ApoDown": dpo("apo_down"),
    "SppoHard": dpo("sppo_hard"),
    "Discopop": dpo("discopop"),
    "Simpo": cpo("simpo"),
    "Cpo": cpo("cpo"),
    "Orpo": orpo(),
}

# The other constants in dpo_loss.rs, by the test that uses them.
EDGES = {
    "label_smoothing: robust, ε = 0.2": (dpo("robust", label_smoothing=0.2), 1.0277333771),
    "gamma_alpha_lambda_edges: simpo, γ = 0": (cpo("simpo", simpo_gamma=0.0), 0.5533380097),
    "gamma_alpha_lambda_edges: cpo, α = 0": (cpo("cpo", cpo_alpha=0.0), 0.8132616875),
    "gamma_alpha_lambda_edges: orpo, λ = 1": (orpo(orpo_lambda=1.0), 2.4249654580),
}


def main():
    test = (Path(__file__).parent / "dpo_loss.rs").read_text(encoding="utf-8")
    body = test.split("fn every_loss_matches_golden_values", 1)[1].split("#[test]", 1)[0]
    in_test = {k: float(v) for k, v in re.findall(r"\(DpoLoss::(\w+), ([-0-9.]+)\)", body)}
    failed = False
    print(f"{'loss':<12} {'TRL formula':>14} {'dpo_loss.rs':>14}")
    for kind, value in GOLDEN.items():
        written = in_test.get(kind)
        ok = written is not None and abs(written - value) < 1e-9
        failed |= not ok
        print(f"{kind:<12} {value:>14.10f} {written if written is not None else 'missing':>14} {'' if ok else '  MISMATCH'}")
    for what, (value, written) in EDGES.items():
        ok = abs(written - value) < 1e-9
        failed |= not ok
        print(f"{what}: {value:.10f} (test {written}){'' if ok else '  MISMATCH'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
