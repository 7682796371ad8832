"""The leaderboard: submit validated runs, recompute them, rank them with paired statistics, render pages.

* :func:`~ood_pl_bench.leaderboard.submission.submit` adds a validated run under
  ``leaderboards/<edition>/<task>/<name>/`` (``oodpl submit``);
* :func:`~ood_pl_bench.leaderboard.validate.validate` recomputes every metric of a run or submission
  from its per-sample files (``oodpl validate``);
* :func:`~ood_pl_bench.leaderboard.table.leaderboard` builds the ranked tables (``oodpl leaderboard``);
* :func:`~ood_pl_bench.leaderboard.render.render_leaderboard` writes ``leaderboards/README.md`` and
  ``leaderboards/index.html``;
* :func:`~ood_pl_bench.leaderboard.compare.compare` compares two runs domain by domain (``oodpl compare``).
"""
