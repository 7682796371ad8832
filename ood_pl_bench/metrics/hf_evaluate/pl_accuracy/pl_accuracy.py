"""Implicit-reward preference accuracy (``pl_accuracy``) of ood-pl-bench as an ``evaluate`` module.

Load it offline from the installed package (no hub access)::

    import evaluate
    from ood_pl_bench.metrics.hf_evaluate import module_path

    pl = evaluate.load(module_path("pl_accuracy"))

It imports :mod:`ood_pl_bench` by absolute name: ``evaluate`` copies this script into its module
cache before importing it, so relative imports would not resolve.
"""

import datasets
import evaluate

from ood_pl_bench.metrics.preference import preference_report

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
Preference accuracy of a policy's implicit reward on preference pairs (x, y_w, y_l): a pair scores 1
if (log pi_theta - log pi_ref)(y_w|x) > (log pi_theta - log pi_ref)(y_l|x), 0.5 on a tie and 0
otherwise; the accuracy is the mean over all pairs added (never a mean of batch means). Also returns
the likelihood accuracy (sign of log pi_theta(y_w|x) - log pi_theta(y_l|x)), the mean implicit
margin, the number of ties and the Bradley-Terry log-likelihood mean log sigmoid(beta * margin).
The reference policy itself scores exactly 0.5.
"""

_KWARGS_DESCRIPTION = """
Args:
    policy_chosen_logps: per pair, log pi_theta(y_w|x) summed over the response tokens.
    policy_rejected_logps: per pair, log pi_theta(y_l|x) summed over the response tokens.
    reference_chosen_logps: per pair, log pi_ref(y_w|x).
    reference_rejected_logps: per pair, log pi_ref(y_l|x).
    beta: reward factor of the Bradley-Terry log-likelihood (default 1.0).
    atol: differences with absolute value <= atol count as ties (default 0.0).
    full_report: if True, return ood-pl-bench's metric dicts with 95% bootstrap and Wilson
        intervals instead of plain numbers (default False).
    seed: seed of the bootstrap resampling when full_report is True (default 0).
Returns:
    pl_accuracy, pl_likelihood_accuracy, pl_margin, pl_bt_loglik: floats (None with no pairs);
    pl_ties: int (None with no pairs); n: the number of pairs.
Examples:
    >>> pl = evaluate.load(module_path("pl_accuracy"))
    >>> pl.compute(policy_chosen_logps=[-1.0, -2.0, -3.0], policy_rejected_logps=[-2.0, -2.0, -1.0],
    ...            reference_chosen_logps=[-1.5, -2.0, -2.0], reference_rejected_logps=[-2.0, -2.0, -2.0])["pl_accuracy"]
    0.5
"""

_FEATURES = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PlAccuracy(evaluate.Metric):
    """Implicit-reward preference accuracy over all pairs added with ``add_batch`` / ``compute``."""

    def _info(self):
        """Describe the module and its four float64 per-pair inputs."""
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({name: datasets.Value("float64") for name in _FEATURES}),
            reference_urls=["https://arxiv.org/abs/2402.14760"],
            format="numpy",
        )

    def _compute(
        self,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta=1.0,
        atol=0.0,
        full_report=False,
        seed=0,
    ):
        """Compute the metrics over every pair added (see the module description)."""
        report = preference_report(
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
            beta=beta,
            atol=atol,
            seed=seed,
            n_resamples=2000 if full_report else 0,
        )
        if full_report:
            return report
        out = {name: entry["value"] for name, entry in report.items()}
        out["n"] = report["pl_accuracy"]["n"]
        return out
