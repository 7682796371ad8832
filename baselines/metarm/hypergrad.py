"""Hypergradients of metarm's outer loss with respect to the reward-model parameters φ.

Pure functions over a *log-likelihood function* ``loglik(θ, batch) -> Tensor[B]`` (θ a dict of
adapter tensors, rows' summed response log-probs; e.g. ``Policy.response_logprobs(batch,
params=θ)``, which runs through ``torch.func.functional_call``) and a *reward function*
``reward_fn(rm_batch) -> Tensor[B]`` that is differentiable in φ (e.g. ``RewardModel.forward``).

One episode (SPEC section 4): θ_0 = θ₀ and, for t = 0..D−1,

    θ_{t+1} = θ_t + α Σ_b w_{t,b} g_{t,b},   g_{t,b} = ∇_θ log π_{θ_t}(y_b | x_b),
    w = softmax of r_φ/β within each prompt's group   (or R = exp(min(r_φ/β, m)), "exp"),

then ℓ = mean_j −log σ(A_j − o_j), A_j = log π_{θ_D}(y_j|x_j) − log π_{θ_D}(y'_j|x_j), with a constant
offset o (``margin_offset``: 0 for the paper's loss; A_ref,j = A_j at θ₀, i.e. under π_ref, for the
implicit-reward margin).

Derivation of the analytic hypergradient. Let v = ∂ℓ/∂θ_D. Treating ∂θ_D/∂θ_{t+1} as the identity
(exact for D = 1, because θ_0 and g_{0,b} do not depend on φ), the chain rule through the weights is

    dℓ/dφ ≈ Σ_t Σ_b (∂ℓ/∂w_{t,b}) ∂w_{t,b}/∂φ,   ∂ℓ/∂w_{t,b} = α ⟨v, g_{t,b}⟩ =: α s_{t,b}.

Softmax within a group G: ∂w_b/∂r_c = w_b (δ_bc − w_c)/β, hence
Σ_b s_b ∂w_b/∂φ = (1/β) Σ_c w_c (s_c − Σ_{b∈G} w_b s_b) ∇_φ r_c. For exp weights ∂R_b/∂r_b = R_b/β
(0 where clipped). So

    dℓ/dφ ≈ ∇_φ Σ_{t,b} c_{t,b} r_φ(x_b, y_b),   c = (α/β) w (s − s̄_G)   or   c = (α/β) R s,

with c held constant: one RM backward per inner batch. All s_{t,b} of a batch are the JVP of
θ ↦ [log π_θ(y_b|x_b)]_b at θ_t in direction v: ONE forward-mode pass (``torch.func.jvp``), never
per-sample backward passes. Only θ_t and the batches are kept between the inner loop and the
hypergradient; no inner autograd graph survives its step, so memory does not grow with D.

``hypergrad=exact`` (:func:`exact_hypergradient`) instead keeps the unrolled inner loop
differentiable (``create_graph=True``) and backpropagates ℓ to φ, including every inner Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
LogLik = Callable[[Mapping[str, torch.Tensor], Any], torch.Tensor]
RewardFn = Callable[[Any], torch.Tensor]


@dataclass
class InnerBatch:
    """One inner-loop batch: the same rows encoded for the policy and for the reward model.

    ``groups[b]`` is the index (0..G−1) of row b's prompt: softmax weights are normalised within it.
    """

    policy_batch: Any
    reward_batch: Any
    groups: torch.Tensor


@dataclass
class MetaGradient:
    """Result of one meta-training episode.

    ``loss``: the outer loss ℓ_PL (detached); ``margins``: the loss's margins A_j − o_j per outer
    pair (detached; A_j without a ``margin_offset``);
    ``grads``: dℓ/dφ per reward-model parameter name; ``theta``: the adapted θ_D (detached);
    ``weights``: the inner weights of each inner step (detached).
    """

    loss: torch.Tensor
    margins: torch.Tensor
    grads: dict[str, torch.Tensor]
    theta: Params
    weights: list[torch.Tensor] = field(default_factory=list)


# --- building blocks ---------------------------------------------------------------------------------


def group_index(sizes: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Group ids for rows laid out prompt by prompt: sizes (2, 3) -> tensor([0, 0, 1, 1, 1])."""
    return torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                   torch.as_tensor(list(sizes), device=device))


def inner_weights(rewards: torch.Tensor, groups: torch.Tensor, beta: float, mode: str = "softmax",
                  max_log_weight: float = 5.0) -> torch.Tensor:
    """The inner-loop sample weights w_b (differentiable in ``rewards``).

    ``softmax``: exp(r_b/β) / Σ_{c in b's group} exp(r_c/β) (each group sums to 1);
    ``exp``: R_b = exp(min(r_b/β, max_log_weight)) (the paper's raw weights, clipped).
    """
    z = rewards / beta
    groups = groups.to(z.device)
    if mode == "exp":
        return torch.exp(torch.clamp(z, max=max_log_weight))
    if mode != "softmax":
        raise ValueError(f"unknown weight mode {mode!r}")
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    # Subtract the per-group max (a constant within the group) for stability.
    zmax = torch.full((n_groups,), float("-inf"), dtype=z.dtype, device=z.device)
    zmax = zmax.scatter_reduce(0, groups, z.detach(), reduce="amax")
    e = torch.exp(z - zmax[groups])
    denom = torch.zeros(n_groups, dtype=z.dtype, device=z.device).index_add(0, groups, e)
    return e / denom[groups]


def hypergrad_coefficients(weights: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, *,
                           alpha: float, beta: float, mode: str = "softmax",
                           rewards: torch.Tensor | None = None,
                           max_log_weight: float = 5.0) -> torch.Tensor:
    """The coefficients c_b of dℓ/dφ ≈ ∇_φ Σ_b c_b r_φ(x_b, y_b) for one inner batch.

    ``softmax``: c_b = (α/β)·w_b·(s_b − Σ_{c∈G(b)} w_c s_c); ``exp``: c_b = (α/β)·R_b·s_b, and 0 where
    r_b/β was clipped (``rewards`` needed to tell). ``scores`` are s_b = ⟨v, g_b⟩. Detached.
    """
    w, s = weights.detach(), scores.detach().to(device=weights.device, dtype=weights.dtype)
    groups = groups.to(w.device)
    if mode == "exp":
        c = (alpha / beta) * w * s
        if rewards is not None:
            c = torch.where(rewards.detach() / beta < max_log_weight, c, torch.zeros_like(c))
        return c
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    mean_s = torch.zeros(n_groups, dtype=w.dtype, device=w.device).index_add(0, groups, w * s)
    return (alpha / beta) * w * (s - mean_s[groups])


def weighted_loglik_grad(loglik: LogLik, theta: Mapping[str, torch.Tensor], batch: Any,
                         weights: torch.Tensor, create_graph: bool = False) -> Params:
    """∇_θ Σ_b w_b log π_θ(y_b|x_b) at ``theta`` (one backward pass over the batch).

    With ``create_graph=False`` the weights are treated as constants and the graph is freed.
    """
    names = list(theta)
    leaves = {k: (v if v.requires_grad else v.detach().requires_grad_(True)) for k, v in theta.items()}
    logp = loglik(leaves, batch)
    w = weights if create_graph else weights.detach()
    obj = (w.to(device=logp.device, dtype=logp.dtype) * logp).sum()
    grads = torch.autograd.grad(obj, [leaves[k] for k in names], create_graph=create_graph,
                                allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(theta[k])) for k, g in zip(names, grads)}


def inner_update(theta: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor],
                 alpha: float) -> Params:
    """θ + α·g, parameter by parameter (an SGD *ascent* step on the weighted log-likelihood)."""
    return {k: theta[k] + alpha * grads[k] for k in theta}


def pair_margins(loglik: LogLik, theta: Mapping[str, torch.Tensor], pair_batch: Any) -> torch.Tensor:
    """A_j = log π_θ(y_j|x_j) − log π_θ(y'_j|x_j) from one batch laid out [chosen rows; rejected rows]."""
    logp = loglik(theta, pair_batch)
    n = logp.shape[0] // 2
    return logp[:n] - logp[n:]


def pl_loss(margins: torch.Tensor) -> torch.Tensor:
    """The outer loss ℓ_PL = mean_j −log σ(A_j)."""
    return -F.logsigmoid(margins).mean()


def jvp_scores(loglik: LogLik, theta: Mapping[str, torch.Tensor], batch: Any,
               direction: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """s_b = ⟨v, ∇_θ log π_θ(y_b|x_b)⟩ for every row b, by ONE forward-mode JVP over the batch."""
    primals = {k: v.detach() for k, v in theta.items()}
    tangents = {k: direction[k].detach().to(primals[k].dtype) for k in primals}
    _, tangent_out = torch.func.jvp(lambda th: loglik(th, batch), (primals,), (tangents,))
    return tangent_out.detach()


def _offset(margins: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    return margins if offset is None else margins - offset.detach().to(margins.dtype)


def _rm_grad(objective: torch.Tensor, rm_params: Mapping[str, torch.Tensor]) -> Params:
    names = list(rm_params)
    grads = torch.autograd.grad(objective, [rm_params[k] for k in names], allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(rm_params[k])) for k, g in zip(names, grads)}


def _add(acc: Params | None, new: Params) -> Params:
    if acc is None:
        return {k: v.clone() for k, v in new.items()}
    return {k: acc[k] + new[k] for k in acc}


# --- the two hypergradients ---------------------------------------------------------------------------


def analytic_hypergradient(loglik: LogLik, reward_fn: RewardFn, rm_params: Mapping[str, torch.Tensor],
                           theta0: Mapping[str, torch.Tensor], inner_batches: Sequence[InnerBatch],
                           outer_batch: Any, *, alpha: float, beta: float, weights: str = "softmax",
                           max_log_weight: float = 5.0,
                           margin_offset: torch.Tensor | None = None) -> MetaGradient:
    """One episode with the analytic hypergradient (module docstring): exact when D = 1.

    Inner loop: rewards without a graph, weights, one backward per step for Σ_b w_b g_b, keeping
    only θ_t. Outer: one forward/backward at θ_D for ℓ and v. Then per inner step one JVP for all
    s_b and one RM backward of Σ_b c_b r_φ(x_b, y_b).
    """
    theta = {k: v.detach() for k, v in theta0.items()}
    thetas: list[Params] = []
    all_w: list[torch.Tensor] = []
    all_r: list[torch.Tensor] = []
    for ib in inner_batches:
        with torch.no_grad():
            r = reward_fn(ib.reward_batch).detach()
        w = inner_weights(r, ib.groups, beta, weights, max_log_weight)
        g = weighted_loglik_grad(loglik, theta, ib.policy_batch, w)
        thetas.append(theta)
        all_w.append(w)
        all_r.append(r)
        theta = {k: v.detach() for k, v in inner_update(theta, g, alpha).items()}
    leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    margins = _offset(pair_margins(loglik, leaves, outer_batch), margin_offset)
    loss = pl_loss(margins)
    names = list(leaves)
    v = dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)))
    v = {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in v.items()}
    grads: Params | None = None
    for ib, th, w, r in zip(inner_batches, thetas, all_w, all_r):
        s = jvp_scores(loglik, th, ib.policy_batch, v)
        c = hypergrad_coefficients(w, s, ib.groups, alpha=alpha, beta=beta, mode=weights,
                                   rewards=r, max_log_weight=max_log_weight)
        rewards = reward_fn(ib.reward_batch)
        surrogate = (rewards * c.to(rewards.dtype)).sum()
        grads = _add(grads, _rm_grad(surrogate, rm_params))
    if grads is None:
        grads = {k: torch.zeros_like(p) for k, p in rm_params.items()}
    return MetaGradient(loss=loss.detach(), margins=margins.detach(), grads=grads,
                        theta={k: t.detach() for k, t in leaves.items()}, weights=all_w)


def exact_hypergradient(loglik: LogLik, reward_fn: RewardFn, rm_params: Mapping[str, torch.Tensor],
                        theta0: Mapping[str, torch.Tensor], inner_batches: Sequence[InnerBatch],
                        outer_batch: Any, *, alpha: float, beta: float, weights: str = "softmax",
                        max_log_weight: float = 5.0,
                        margin_offset: torch.Tensor | None = None) -> MetaGradient:
    """One episode with dℓ/dφ by backpropagation through the unrolled inner loop.

    Every θ_{t+1} = θ_t + α ∇_θ Σ_b w_b(φ) log π_{θ_t}(y_b|x_b) is built with ``create_graph=True``
    (second-order terms included), and ℓ(θ_D) is differentiated with respect to ``rm_params``.
    Memory grows with D: meant for checking the analytic path and for small models.
    """
    theta: Params = {k: v.detach().requires_grad_(True) for k, v in theta0.items()}
    all_w: list[torch.Tensor] = []
    for ib in inner_batches:
        r = reward_fn(ib.reward_batch)
        w = inner_weights(r, ib.groups, beta, weights, max_log_weight)
        g = weighted_loglik_grad(loglik, theta, ib.policy_batch, w, create_graph=True)
        theta = inner_update(theta, g, alpha)
        all_w.append(w.detach())
    margins = _offset(pair_margins(loglik, theta, outer_batch), margin_offset)
    loss = pl_loss(margins)
    grads = _rm_grad(loss, rm_params)
    return MetaGradient(loss=loss.detach(), margins=margins.detach(), grads=grads,
                        theta={k: t.detach() for k, t in theta.items()}, weights=all_w)


HYPERGRADIENTS: dict[str, Callable[..., MetaGradient]] = {
    "analytic": analytic_hypergradient,
    "exact": exact_hypergradient,
}
