"""ReMDM: unmasking that also remasks decoded tokens (Wang et al. 2025, "Remasking Discrete Diffusion
Models with Inference-Time Scaling").

With alpha_t = 1 - m(t), at a step t -> s each generated token that is already decoded is remasked
with probability sigma_t <= sigma_max = min(1, (1 - alpha_s) / alpha_t), the largest value for which
the step still has the marginals of the masking schedule. `remask` picks sigma_t:
  cap      sigma_t = min(eta, sigma_max)   (ReMDM-cap)
  rescale  sigma_t = eta * sigma_max       (ReMDM-rescale)
Count-based, as Unmask, so the mask count follows Unmask's schedule: of the M tokens masked at t,
keep = round(M m(s) / m(t)) stay masked; of the U decoded generated tokens, r = min(round(sigma_t U),
keep) are remasked (`order`: random uniformly; confidence the lowest probability recorded when they
were revealed, a deterministic form of ReMDM-conf, which draws them with weights softmax(-confidence)), and M - keep + r masked tokens are revealed (as Unmask's `order`), so
exactly `keep` are [MASK] after the step. Remasked tokens are drawn again later; given tokens (not
[MASK] in the input: a prompt) are never remasked. Draws, `top_p`, `temperature` and `cache` are
Unmask's; `eta` in [0, 1] (0: Unmask's process, not its draws).
"""

import torch

from vdiff.samplers.unmask import Unmask

REMASKS = ("cap", "rescale")


class Remask(Unmask):
    def __init__(
        self,
        steps: int = 128,
        order: str = "random",
        temperature: float = 1.0,
        mask_id: int = 0,
        top_p: float = 1.0,
        cache: bool = False,
        eta: float = 0.02,
        remask: str = "cap",
    ):
        super().__init__(steps=steps, order=order, temperature=temperature, mask_id=mask_id, top_p=top_p, cache=cache)
        if remask not in REMASKS:
            raise ValueError(f"sampler.remask={remask!r} is not one of {', '.join(REMASKS)}")
        if not 0 <= eta <= 1:
            raise ValueError(f"sampler.eta={eta} must lie in [0, 1]")
        self.eta = eta
        self.remask = remask

    def sigma_max(self, m_t: torch.Tensor, m_s: torch.Tensor) -> torch.Tensor:
        """min(1, (1 - alpha_s) / alpha_t) = min(1, m(s) / (1 - m(t))); 1 at alpha_t = 0, 0 at m(s) = 0."""
        return (m_s / (1 - m_t).clamp_min(1e-300)).clamp(max=1.0)

    def sigma(self, m_t: torch.Tensor, m_s: torch.Tensor) -> torch.Tensor:
        """The remasking probability: min(eta, sigma_max) (cap) or eta * sigma_max (rescale)."""
        if self.remask == "cap":
            return self.sigma_max(m_t, m_s).clamp(max=self.eta)
        return self.eta * self.sigma_max(m_t, m_s)

    def step(self, x, conf, tokens, prob, m_t, m_s, generator=None):
        """t -> s: remask r decoded generated tokens, reveal M - keep + r masked ones. Returns (x, conf)."""
        masked = x == self.mask_id
        count = masked.sum(-1)
        keep = self.keep(count, m_t, m_s)
        decoded = ~masked & conf.isfinite()  # generated: given tokens carry conf = inf
        r = torch.minimum(torch.round(self.sigma(m_t, m_s) * decoded.sum(-1).double()).long(), keep)
        revealed = self.reveal(masked, count - keep + r, self.score(prob, generator))
        remasked = self.reveal(decoded, r, self.score(1 - conf, generator))  # confidence: the least sure first
        x = torch.where(revealed, tokens, x).masked_fill(remasked, self.mask_id)
        return x, torch.where(revealed, prob, conf)

    def settings(self, num_steps: int | None = None) -> dict:
        return {**super().settings(num_steps), "eta": float(self.eta), "remask": self.remask}
