"""The metrics a run reports, with one-line descriptions (``oodpl ls metrics``)."""

METRICS: dict[str, str] = {
    "pl_accuracy": "implicit-reward preference accuracy on test pairs: (log pi - log pi_ref)(y_w) > (...)(y_l); tie 0.5",
    "pl_likelihood_accuracy": "sign of A = log pi(y_w|x) - log pi(y_l|x) on test pairs",
    "pl_margin": "mean implicit-reward margin on test pairs",
    "pl_ties": "number of test pairs with a zero implicit margin",
    "pl_bt_loglik": "held-out Bradley-Terry log-likelihood of the implicit margins",
    "rm_accuracy": "the method's own reward model on the same test pairs",
    "gold_reward": "mean gold reward of generations on the domain's evaluation prompts",
    "kl": "mean sum_t (log pi - log pi_ref) on those generations (paired with gold_reward)",
    "win_rate[JUDGE]": "judge preference of the method's generation over pi_ref's, both orders (disagreement = tie), tie 0.5",
    "lc_win_rate[JUDGE]": "length-controlled win rate: logistic fit of outcomes on the length difference, at zero difference",
}
