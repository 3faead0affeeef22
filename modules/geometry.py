"""Coordinate grids, keypoint heatmaps and the random affine + thin-plate-spline warp.

Coordinates are normalised to [-1, 1] (x right, y down), the convention of ``F.grid_sample``.
"""
import torch
import torch.nn.functional as F


def make_coordinate_grid(spatial_size, dtype=torch.float32, device=None):
    """Grid of normalised (x, y) coordinates of every pixel centre-to-edge. (H, W, 2).

    x runs from -1 (first column) to 1 (last column), y likewise over rows.
    """
    h, w = spatial_size
    x = 2 * (torch.arange(w, dtype=dtype, device=device) / (w - 1)) - 1
    y = 2 * (torch.arange(h, dtype=dtype, device=device) / (h - 1)) - 1
    xx = x.view(1, -1).expand(h, w)
    yy = y.view(-1, 1).expand(h, w)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(value, spatial_size, kp_variance):
    """Unnormalised Gaussian heatmap around each keypoint.

    value: (..., K, 2) normalised keypoints → (..., K, H, W), exp(-|z - p|² / (2 var)).
    """
    grid = make_coordinate_grid(spatial_size, dtype=value.dtype, device=value.device)
    diff = grid - value[..., None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


def pixels_to_normalized(points, frame_size):
    """Pixel (x, y) → [-1, 1] as the published prior does: 2·p/size − 1. points (..., 2), frame_size (H, W)."""
    h, w = frame_size
    scale = points.new_tensor([w, h])
    return 2 * points / scale - 1


def normalized_to_pixels(points, frame_size):
    """Inverse of :func:`pixels_to_normalized`. points (..., 2), frame_size (H, W)."""
    h, w = frame_size
    scale = points.new_tensor([w, h])
    return (points + 1) * scale / 2


class Transform:
    """Random affine + thin-plate-spline warp used by the equivariance losses.

    ``warp_coordinates`` maps a point of the *transformed* frame to the point of the original frame it
    was sampled from, so ``transform_frame`` is a plain ``grid_sample`` of the original. Parameters can be
    passed explicitly (tests, reproduction) or drawn: θ = I + N(0, σ_affine²) of shape (B, 2, 3), TPS
    control points on a ``points_tps``² grid with weights N(0, σ_tps²) of shape (B, 1, points_tps²).
    """

    def __init__(self, bs, sigma_affine=0.05, sigma_tps=None, points_tps=None, *, theta=None,
                 control_points=None, control_params=None, generator=None, device=None, align_corners=False):
        self.bs = bs
        self.align_corners = align_corners
        if theta is None:
            noise = torch.randn(bs, 2, 3, generator=generator) * sigma_affine
            theta = noise + torch.eye(2, 3).view(1, 2, 3)
        self.theta = theta.to(device) if device is not None else theta
        self.tps = control_params is not None or (sigma_tps is not None and points_tps is not None)
        if self.tps:
            if control_points is None:
                control_points = make_coordinate_grid((points_tps, points_tps)).unsqueeze(0)
            if control_params is None:
                control_params = torch.randn(bs, 1, points_tps**2, generator=generator) * sigma_tps
            self.control_points = control_points.to(self.theta.device)
            self.control_params = control_params.to(self.theta.device)

    def warp_coordinates(self, coordinates):
        """(B, N, 2) normalised points of the transformed frame → (B, N, 2) points of the original."""
        theta = self.theta.to(coordinates.dtype)
        linear, shift = theta[:, None, :, :2], theta[:, None, :, 2]
        warped = (linear @ coordinates.unsqueeze(-1)).squeeze(-1) + shift
        if self.tps:
            points = self.control_points.to(coordinates.dtype).reshape(1, 1, -1, 2)
            params = self.control_params.to(coordinates.dtype)
            # The published TPS measures distance in L1 (|dx| + |dy|), not the usual Euclidean norm.
            r = (coordinates.unsqueeze(2) - points).abs().sum(-1)
            radial = r**2 * torch.log(r + 1e-6)
            warped = warped + (radial * params).sum(dim=2, keepdim=True)
        return warped

    def transform_frame(self, frame):
        """Sample ``frame`` (B, C, H, W) through the warp, reflection padding. (B, C, H, W).

        The grid spans pixel centres -1..1 while ``align_corners=False`` reads -1 as the outer pixel
        edge, so even the identity warp resamples slightly (as in the published code).
        """
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), dtype=frame.dtype, device=frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid.expand(self.bs, -1, -1)).view(self.bs, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=self.align_corners)

    def jacobian(self, coordinates):
        """d warp / d z at ``coordinates`` (B, N, 2) → (B, N, 2, 2), rows = output x, y.

        Differentiable (create_graph) so the jacobian-equivariance loss trains the keypoint detector.
        """
        with torch.enable_grad():
            if not coordinates.requires_grad:
                coordinates = coordinates.detach().requires_grad_(True)
            warped = self.warp_coordinates(coordinates)
            grad_x = torch.autograd.grad(warped[..., 0].sum(), coordinates, create_graph=True)[0]
            grad_y = torch.autograd.grad(warped[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)

    def inverse_warp_coordinates(self, points, iterations=30, tol=1e-9):
        """Points of the original frame → where they land in the transformed frame. (B, N, 2).

        Solves warp(q) = p per point by damped Newton steps from the inverse of the affine part.
        The published TPS measures L1 distances and is not always invertible: it can fold a region
        over itself, so some points have no preimage and Newton can stall in a crease. Points left
        unsolved restart from the best point of a coarse grid over the frame, and keep whichever
        answer lands closer: the exact preimage where there is one, else the closest point reached.
        """
        target = points.detach().to(torch.float64)
        as_double = _DoubleView(self)
        linear_inv = torch.linalg.inv(as_double.theta[:, :, :2])[:, None]
        start = (linear_inv @ (target - as_double.theta[:, None, :, 2]).unsqueeze(-1)).squeeze(-1)
        q, residual = as_double._damped_newton(start, target, iterations, tol)
        unsolved = residual.norm(dim=-1) > 1e-6
        if unsolved.any():
            retry, retry_residual = as_double._damped_newton(as_double._grid_start(target), target, iterations, tol)
            better = (retry_residual.norm(dim=-1) < residual.norm(dim=-1)).unsqueeze(-1)
            q = torch.where(better, retry, q)
        return q.to(points.dtype)

    def _damped_newton(self, q, target, iterations, tol):
        """Newton steps on warp(q) = target, each halved until it lowers that point's residual;
        a point that no step improves has stalled and stops. → (q, residual), both (B, N, 2)."""
        residual = self.warp_coordinates(q) - target
        active = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
        for _ in range(iterations):
            error = residual.norm(dim=-1)
            active &= error > tol
            if not active.any():
                break
            step = torch.linalg.solve(self.analytic_jacobian(q), residual.unsqueeze(-1)).squeeze(-1)
            scale = torch.ones_like(error)
            for _ in range(20):
                candidate = q - scale.unsqueeze(-1) * step
                candidate_residual = self.warp_coordinates(candidate) - target
                worse = candidate_residual.norm(dim=-1) >= error
                if not (worse & active).any():
                    break
                scale = torch.where(worse, scale / 2, scale)
            improved = (candidate_residual.norm(dim=-1) < error) & active
            active &= improved
            q = torch.where(improved.unsqueeze(-1), candidate, q)
            residual = torch.where(improved.unsqueeze(-1), candidate_residual, residual)
        return q, residual

    def _grid_start(self, target, extent=1.5, steps=121):
        """For each target point, the point of a grid over [-extent, extent]² that the warp takes
        closest to it. (B, N, 2)."""
        axis = torch.linspace(-extent, extent, steps, dtype=target.dtype, device=target.device)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(1, -1, 2)
        warped = self.warp_coordinates(grid.expand(target.shape[0], -1, -1))  # (B, G, 2)
        nearest = torch.cdist(target, warped).argmin(dim=-1)  # (B, N)
        return grid[0][nearest]

    def analytic_jacobian(self, coordinates):
        """Closed form of :meth:`jacobian` (no autograd; for the inversion's inner loop). (B, N, 2, 2).

        The TPS term adds one scalar f(z) = Σ_c w_c φ(r_c) to both coordinates, with
        r_c = |z − c|₁ and φ(r) = r² log(r + 1e-6), so its jacobian is [∇f; ∇f].
        """
        theta = self.theta.to(coordinates.dtype)
        jac = theta[:, None, :, :2].expand(coordinates.shape[0], coordinates.shape[1], 2, 2)
        if not self.tps:
            return jac
        points = self.control_points.to(coordinates.dtype).reshape(1, 1, -1, 2)
        params = self.control_params.to(coordinates.dtype)  # (B, 1, P)
        offset = coordinates.unsqueeze(2) - points  # (B, N, P, 2)
        r = offset.abs().sum(-1)
        dphi = 2 * r * torch.log(r + 1e-6) + r**2 / (r + 1e-6)
        grad = ((params * dphi).unsqueeze(-1) * torch.sign(offset)).sum(dim=2)  # (B, N, 2)
        return jac + grad.unsqueeze(-2).expand(-1, -1, 2, -1)


class _DoubleView(Transform):
    """The same warp evaluated in float64 (for the Newton inversion)."""

    def __init__(self, transform):
        self.bs = transform.bs
        self.theta = transform.theta.to(torch.float64)
        self.tps = transform.tps
        if self.tps:
            self.control_points = transform.control_points.to(torch.float64)
            self.control_params = transform.control_params.to(torch.float64)
