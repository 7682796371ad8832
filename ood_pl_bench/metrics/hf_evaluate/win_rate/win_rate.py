"""Judge win rate (``win_rate``) of ood-pl-bench as an ``evaluate`` module, from pairwise verdicts.

Load it offline from the installed package (no hub access)::

    import evaluate
    from ood_pl_bench.metrics.hf_evaluate import module_path

    wr = evaluate.load(module_path("win_rate"))

It imports :mod:`ood_pl_bench` by absolute name: ``evaluate`` copies this script into its module
cache before importing it, so relative imports would not resolve.
"""

import datasets
import evaluate

from ood_pl_bench.judges.win_rate import win_rate_from_verdicts

_CITATION = """\
@inproceedings{jia2024generalizing,
  title     = {Generalizing Reward Modeling for Out-of-Distribution Preference Learning},
  author    = {Jia, Chen},
  booktitle = {ECML-PKDD},
  year      = {2024},
  note      = {arXiv:2402.14760}
}
"""

_DESCRIPTION = """\
Win rate of a policy against a reference from a judge's pairwise verdicts, each pair judged in both
orders: policy shown first (position A) and reference shown first. Both orders preferring the policy
is a win (1), both preferring the reference a loss (0), a disagreement (including one tie) a tie
(0.5); an unparseable verdict is counted and scored as a tie (or excluded with
unparseable="exclude"). The win rate is the mean outcome over all pairs added (never a mean of batch
means); each pair is its own resampling unit (for several samples per prompt, where each prompt
should count once, use ood_pl_bench.judges.win_rate.win_rate_from_verdicts with prompt_ids). The length-controlled win rate is sigmoid(b0) of a
logistic fit of the outcome on the (RMS-scaled) length difference: the predicted win rate at equal
lengths (see ood_pl_bench.judges.win_rate).
"""

_KWARGS_DESCRIPTION = """
Args:
    policy_first: per pair, the winner position when the policy was shown first: "A", "B" or "tie";
        anything else (None, "") is an unparseable verdict.
    reference_first: per pair, the winner position when the reference was shown first.
    policy_length: per pair, the length of the policy's response (characters).
    reference_length: per pair, the length of the reference's response (characters).
    unparseable: "tie" (default) or "exclude".
    full_report: if True, return ood-pl-bench's metric dicts with 95% bootstrap intervals and the
        counts instead of plain numbers (default False).
    seed: seed of the bootstrap resampling when full_report is True (default 0).
Returns:
    win_rate, lc_win_rate, inconsistency_rate: floats (None with no pairs); wins, ties, losses,
    inconsistent, unparseable (verdicts): ints; mean_length_policy, mean_length_reference: floats;
    n: the number of pairs.
Examples:
    >>> wr = evaluate.load(module_path("win_rate"))
    >>> wr.compute(policy_first=["A", "A", "B"], reference_first=["B", "A", "A"],
    ...            policy_length=[10, 12, 9], reference_length=[10, 11, 9])["win_rate"]
    0.5
"""

_VERDICTS = {
    "policy_first": datasets.Value("string"),
    "reference_first": datasets.Value("string"),
    "policy_length": datasets.Value("int64"),
    "reference_length": datasets.Value("int64"),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WinRate(evaluate.Metric):
    """Judge win rate over all pairs added with ``add_batch`` / ``compute``."""

    def _info(self):
        """Describe the module: two verdicts and two lengths per pair."""
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(_VERDICTS),
            reference_urls=["https://arxiv.org/abs/2402.14760"],
        )

    def _compute(self, policy_first, reference_first, policy_length, reference_length, unparseable="tie",
                 full_report=False, seed=0):
        """Compute the win rate over every pair added (see the module description)."""
        report = win_rate_from_verdicts(
            list(policy_first), list(reference_first), list(policy_length), list(reference_length),
            unparseable=unparseable, seed=seed, n_resamples=2000 if full_report else 0)
        if full_report:
            return report
        wr = report["win_rate"]
        keys = ("wins", "ties", "losses", "inconsistent", "inconsistency_rate", "unparseable",
                "mean_length_policy", "mean_length_reference")
        out = {"win_rate": wr["value"], "lc_win_rate": report["lc_win_rate"]["value"]}
        out.update({k: wr[k] for k in keys})
        out["n"] = wr["n_pairs"]
        return out
