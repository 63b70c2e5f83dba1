"""Iterative unmasking: the reverse process of masked diffusion.

Start from `x` (B, L) long in which [MASK] marks the positions to generate (all of them for free
generation; a prompt keeps its given tokens: infilling), walk N steps t_k = 1 - k/N down to 0. At
each step every masked position draws a token from the network's categorical p_theta(x0 | x_t)
(temperature-scaled, drawn in float64), and a schedule-determined number of them is revealed: of the
M tokens masked at time t, round(M * m(s) / m(t)) stay masked at s = t - 1/N, the expected count under
the true reverse process (each masked token stays masked with probability m(s)/m(t)).
Which tokens are revealed is the `order`:
  random      uniformly among the masked positions: the true reverse process, given the count;
  confidence  the ones whose drawn token has the highest probability; the rest are re-masked
              (MaskGIT, Chang et al. 2022; LLaDA's low-confidence remasking).
Revealed and given tokens never change again; the last step reveals everything, so no [MASK] remains.
It is called as the Gaussian samplers are, `sampler(net, schedule, x, cond=..., generator=...,
progress=...)`, and calls `net(x, t, cond)`; `mask_id` (the task's, checked there) is its own setting.

float64 draws: Gumbel-max sampling in float32 truncates the Gumbel tail, which lowers the entropy of
the samples (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic ...").
"""

import torch
from tqdm.auto import tqdm

from vdiff.diffusion.masked import clean_log_probs
from vdiff.utils import stop

ORDERS = ("random", "confidence")


class Unmask:
    def __init__(self, steps: int = 128, order: str = "random", temperature: float = 1.0, mask_id: int = 0):
        if order not in ORDERS:
            raise ValueError(f"sampler.order={order!r} is not one of {', '.join(ORDERS)}")
        if steps < 1:
            raise ValueError(f"sampler.steps={steps} must be at least 1")
        if temperature <= 0:
            raise ValueError(f"sampler.temperature={temperature} must be positive")
        self.steps = steps
        self.order = order
        self.temperature = temperature
        self.mask_id = mask_id

    def draw(self, logits: torch.Tensor, mask_id: int, generator=None):
        """One float64 categorical draw per position: (tokens (B, L), their probabilities (B, L))."""
        logp = clean_log_probs(logits.double() / self.temperature, mask_id, torch.float64)
        u = torch.rand(logp.shape, generator=generator, device=logp.device, dtype=torch.float64)
        tokens = (logp - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)
        return tokens, logp.gather(-1, tokens[..., None])[..., 0].exp()

    def reveal(self, masked: torch.Tensor, n: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the n[b] masked positions of row b with the highest score."""
        score = score.masked_fill(~masked, -1.0)
        rank = score.argsort(-1, descending=True).argsort(-1)
        return masked & (rank < n[:, None])

    def with_max_steps(self, max_steps: int, num_steps: int | None = None) -> "Unmask":
        """This sampler, or one like it with at most `max_steps` steps (`num_steps` is unused: masking schedules are continuous)."""
        if self.steps <= max_steps:
            return self
        return Unmask(steps=max_steps, order=self.order, temperature=self.temperature, mask_id=self.mask_id)

    def settings(self, num_steps: int | None = None) -> dict:
        return {"steps": self.steps, "eta": None, "guidance_scale": None}

    @torch.no_grad()
    def __call__(
        self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False, trace=None
    ) -> torch.Tensor:
        """Unmask `x` (B, L); raises vdiff.utils.stop.Stopped at the next step once SIGTERM / SIGINT has arrived.
        `trace`, a list, receives x (B, L) after every step (the reveal order, for diagnostics)."""
        mask_id = self.mask_id
        x = x.clone()
        times = torch.linspace(1, 0, self.steps + 1, dtype=torch.float64)
        m = schedule.mask_prob(times)
        for k in tqdm(range(self.steps), desc="Unmask", disable=not progress, leave=False):
            stop.check()
            masked = x == mask_id
            count = masked.sum(-1)
            keep = (
                torch.round(count.double() * (m[k + 1] / m[k])).long()
                if k + 1 < self.steps
                else torch.zeros_like(count)
            )
            t = torch.full((x.shape[0],), float(times[k]), device=x.device)
            tokens, prob = self.draw(net(x, t, cond), mask_id, generator)
            if self.order == "random":
                score = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
            else:
                score = prob
            x = torch.where(self.reveal(masked, count - keep, score), tokens, x)
            if trace is not None:
                trace.append(x)
        return x
