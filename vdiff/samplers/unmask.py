"""Iterative unmasking: the reverse process of masked diffusion.

Start from `x` (B, L) long in which [MASK] marks the positions to generate (all of them for free
generation; a prompt keeps its given tokens: infilling), walk N steps t_k = 1 - k/N down to 0. At
each step every masked position draws a token from the network's categorical p_theta(x0 | x_t)
(temperature-scaled, cut to the `top_p` nucleus, drawn in float64), and a schedule-determined number
of them is revealed: of the M tokens masked at time t, round(M * m(s) / m(t)) stay masked at
s = t - 1/N, the expected count under the true reverse process (each masked token stays masked with
probability m(s)/m(t)). Which tokens are revealed is the `order`:
  random      uniformly among the masked positions: the true reverse process, given the count;
  confidence  the ones whose drawn token has the highest probability; the rest are re-masked
              (MaskGIT, Chang et al. 2022; LLaDA's low-confidence remasking).
Revealed and given tokens never change again; the last step reveals everything, so no [MASK] remains.
It is called as the Gaussian samplers are, `sampler(net, schedule, x, cond=..., generator=...,
progress=...)`, and calls `net(x, t, cond)`; `mask_id` (the task's, checked there) is its own setting.

`top_p` < 1: nucleus sampling (Holtzman et al. 2020), each draw from the smallest set of tokens whose
probability sums to >= top_p, renormalised. `cache`: MDLM's cached sampler (Sahoo et al. 2024,
"ddpm_cache"): a step whose input equals the previous call's (no token changed) reuses its logits,
tokens still drawn afresh; only right for a net that ignores t, so the net must declare
`time_conditioning = False` (model.net.time_conditioning=false). `last_nfe`: the network calls of the
last run. float64 draws: Gumbel-max sampling in float32 truncates the Gumbel tail, which lowers the
entropy of the samples (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic ...").
"""

import copy
import math

import torch
from tqdm.auto import tqdm

from vdiff.diffusion.masked import clean_log_probs
from vdiff.utils import stop

ORDERS = ("random", "confidence")


def nucleus(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    """(..., V) log-probabilities cut to the smallest set whose probability sums to >= top_p, renormalised."""
    sorted_logp, order = logp.sort(-1, descending=True)
    p = sorted_logp.exp()
    outside = (p.cumsum(-1) - p) >= top_p  # the mass before a token already reaches top_p
    return logp.masked_fill(outside.scatter(-1, order, outside), -math.inf).log_softmax(-1)


def unwrap(net):
    """The network itself: the module a torch.compile wrapper holds (`_orig_mod`), else `net`."""
    return net._orig_mod if hasattr(net, "_orig_mod") else net


class Unmask:
    def __init__(
        self,
        steps: int = 128,
        order: str = "random",
        temperature: float = 1.0,
        mask_id: int = 0,
        top_p: float = 1.0,
        cache: bool = False,
    ):
        if order not in ORDERS:
            raise ValueError(f"sampler.order={order!r} is not one of {', '.join(ORDERS)}")
        if steps < 1:
            raise ValueError(f"sampler.steps={steps} must be at least 1")
        if temperature <= 0:
            raise ValueError(f"sampler.temperature={temperature} must be positive")
        if not 0 < top_p <= 1:
            raise ValueError(f"sampler.top_p={top_p} must lie in (0, 1]")
        self.steps = steps
        self.order = order
        self.temperature = temperature
        self.mask_id = mask_id
        self.top_p = top_p
        self.cache = cache
        self.last_nfe = None

    def draw(self, logits: torch.Tensor, mask_id: int, generator=None):
        """One float64 categorical draw per position: (tokens (B, L), their probabilities (B, L))."""
        logp = clean_log_probs(logits.double() / self.temperature, mask_id, torch.float64)
        if self.top_p < 1:
            logp = nucleus(logp, self.top_p)
        u = torch.rand(logp.shape, generator=generator, device=logp.device, dtype=torch.float64)
        tokens = (logp - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)
        return tokens, logp.gather(-1, tokens[..., None])[..., 0].exp()

    def score(self, prob: torch.Tensor, generator=None) -> torch.Tensor:
        """(B, L) in [0, 1], highest first: uniform noise (random order) or the drawn tokens' probabilities."""
        if self.order == "random":
            return torch.rand(prob.shape, generator=generator, device=prob.device, dtype=torch.float64)
        return prob

    def reveal(self, masked: torch.Tensor, n: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the n[b] masked positions of row b with the highest score."""
        score = score.masked_fill(~masked, -1.0)
        rank = score.argsort(-1, descending=True).argsort(-1)
        return masked & (rank < n[:, None])

    def keep(self, count: torch.Tensor, m_t: torch.Tensor, m_s: torch.Tensor) -> torch.Tensor:
        """(B,) of the `count` tokens masked at t, those still masked at s: round(M m(s) / m(t))."""
        return torch.round(count.double() * (m_s / m_t)).long()

    def step(self, x, conf, tokens, prob, m_t, m_s, generator=None):
        """t -> s: reveal all but keep(M) of the M masked tokens. `conf` (B, L) float64 holds each
        token's probability when revealed (inf: given). Returns (x, conf)."""
        masked = x == self.mask_id
        count = masked.sum(-1)
        revealed = self.reveal(masked, count - self.keep(count, m_t, m_s), self.score(prob, generator))
        return torch.where(revealed, tokens, x), torch.where(revealed, prob, conf)

    def with_max_steps(self, max_steps: int, num_steps: int | None = None) -> "Unmask":
        """This sampler, or one like it with at most `max_steps` steps (`num_steps` is unused: masking schedules are continuous)."""
        if self.steps <= max_steps:
            return self
        fewer = copy.copy(self)
        fewer.steps, fewer.last_nfe = max_steps, None
        return fewer

    def settings(self, num_steps: int | None = None) -> dict:
        """`nfe`: network calls per run, one a step; with `cache`, the last run's count and `calls_saved`."""
        out = {"steps": self.steps, "eta": None, "guidance_scale": None, "nfe": self.steps, "top_p": self.top_p}
        if self.cache and self.last_nfe is not None:
            out.update(nfe=self.last_nfe, calls_saved=self.steps - self.last_nfe)
        return out

    @torch.no_grad()
    def __call__(
        self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False, trace=None
    ) -> torch.Tensor:
        """Unmask `x` (B, L); raises vdiff.utils.stop.Stopped at the next step once SIGTERM / SIGINT has arrived.
        `trace`, a list, receives x (B, L) after every step (the reveal order, for diagnostics)."""
        module = unwrap(net)
        if self.cache and (not hasattr(module, "time_conditioning") or module.time_conditioning):
            raise ValueError(
                f"sampler.cache=true reuses logits across times, so the net must declare time_conditioning = False "
                f"(model.net.time_conditioning=false), which {type(module).__name__} does not"
            )
        x, conf = x.clone(), torch.where(x == self.mask_id, 0.0, math.inf).double()
        times = torch.linspace(1, 0, self.steps + 1, dtype=torch.float64)
        m = schedule.mask_prob(times)
        self.last_nfe, changed = 0, True
        for k in tqdm(range(self.steps), desc=type(self).__name__, disable=not progress, leave=False):
            stop.check()
            if changed:
                logits = net(x, torch.full((x.shape[0],), float(times[k]), device=x.device), cond)
                self.last_nfe += 1
            tokens, prob = self.draw(logits, self.mask_id, generator)
            m_s = m[k + 1] if k + 1 < self.steps else torch.zeros_like(m[k])
            new, conf = self.step(x, conf=conf, tokens=tokens, prob=prob, m_t=m[k], m_s=m_s, generator=generator)
            changed = not self.cache or bool((new != x).any())
            x = new
            if trace is not None:
                trace.append(x)
        return x
