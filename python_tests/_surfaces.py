"""Point samples of analytic surfaces with their exact normals (shared by the descriptor tests)."""
import math

import torch


def random_rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def plane(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    pts = torch.cat([uv, torch.zeros(n, 1, dtype=torch.float64)], 1)
    rot = random_rotation(seed + 1)
    normals = rot[:, 2].expand(n, 3)
    return pts @ rot.T + torch.tensor([0.3, -0.2, 3.0], dtype=torch.float64), normals.clone()


def sphere(n: int, radius: float = 1.0, seed: int = 0):
    """Outward normals; centre at the origin."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    return d * radius, d.clone()


def cylinder(n: int, radius: float = 0.5, height: float = 2.0, seed: int = 0):
    """Axis along z through the origin; outward normals."""
    g = torch.Generator().manual_seed(seed)
    ang = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    z = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * height
    normals = torch.stack([ang.cos(), ang.sin(), torch.zeros_like(ang)], 1)
    return normals * radius + torch.stack([torch.zeros_like(z)] * 2 + [z], 1), normals


def wavy_surface(n: int, seed: int = 0, noise: float = 0.002):
    """A smooth height field z = f(x, y) + noise over the unit square, 1 unit in front of the origin."""
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 2, generator=g, dtype=torch.float64)
    z = 0.05 * torch.sin(6 * uv[:, 0]) * torch.cos(5 * uv[:, 1])
    z = z + noise * torch.randn(n, generator=g, dtype=torch.float64) + 1.0
    return torch.cat([uv, z[:, None]], 1)


def wavy_normals(pts: torch.Tensor) -> torch.Tensor:
    """Exact unit normals of `wavy_surface` (without its noise) at pts' (x, y), facing the origin."""
    x, y = pts[:, 0], pts[:, 1]
    dzdx = 0.3 * torch.cos(6 * x) * torch.cos(5 * y)
    dzdy = -0.25 * torch.sin(6 * x) * torch.sin(5 * y)
    n = torch.stack([dzdx, dzdy, -torch.ones_like(x)], 1)
    return n / n.norm(dim=1, keepdim=True)


def angle_deg(a: torch.Tensor, b: torch.Tensor, up_to_sign: bool = False) -> torch.Tensor:
    c = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    if up_to_sign:
        c = c.abs()
    return torch.rad2deg(torch.arccos(c.clamp(-1, 1)))
